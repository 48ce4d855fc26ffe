"""End-to-end latency of the demo on one 640×480 photo: load (decode JPEG) + find faces (detect, align, crop) + classify, and where the time goes.

    python bench/demo_latency.py [--threads 2] [--runs 30] [--detector yunet] [--checkpoint PATH|NAME] [--vs PATH|NAME]

The photo is scikit-image's astronaut, cropped to 4:3 and resized to 640×480, encoded as a JPEG (quality 90),
so every run decodes it as a user upload would be. Prints the median ms of each stage and the total.
`--vs` times a second model in the same process, the two interleaved run by run so both see the machine's same
minutes, and prints the ratio of the totals (the default-model rule of issue #28: accurate ≤ 1.5× fast)."""
import statistics, time

import numpy as np

from fer_nb.predict import Predictor
from fer_nb.faces import load_photo
from fer_nb.synthetic import jpeg_bytes, sample_frame
from common import bench_args

STAGES = ('load', 'find faces', 'classify', 'total (predict)')

def time_once(pred:Predictor, jpeg:bytes)->tuple:
    "ms of each stage for one upload, and the faces `predict` found."
    t0 = time.perf_counter(); im, s = load_photo(jpeg)
    t1 = time.perf_counter(); found = pred.find(im, s)
    t2 = time.perf_counter(); pred.classify(np.stack([f.crop for f in found]))
    t3 = time.perf_counter(); faces = pred.predict(jpeg)
    t4 = time.perf_counter()
    return [(b - a)*1e3 for a, b in zip((t0, t1, t2, t3), (t1, t2, t3, t4))], faces

def report(pred:Predictor, times:list, faces:list, a)->float:
    "Print one model's medians; return its median total."
    print(f"640×480 JPEG, {len(faces)} face ({faces[0].label} {faces[0].confidence:.0%}), detector={a.detector}, runtime={pred.runtime}, "
          f"model={pred.model.arch['name']} at {pred.model.in_size} px, {a.threads} threads (torch and OpenCV), median of {a.runs} runs")
    total = statistics.median(times[-1])
    for k, v in zip(STAGES, times):
        med = statistics.median(v)
        print(f"  {k:16s} {med:7.1f} ms" + ('' if k.startswith('total') else f"  ({med/total:5.1%})"))
    return total

def main():
    a = bench_args(__doc__, runs=30, extra=lambda ap: (ap.add_argument('--detector', default='yunet'),
                                                       ap.add_argument('--vs', help='a second model, timed in the same runs')))
    jpeg = jpeg_bytes(sample_frame(640), 90)
    preds = [Predictor.load(c, detector=a.detector, device='cpu', runtime=a.runtime) for c in [a.checkpoint] + ([a.vs] if a.vs else [])]
    times, last_faces = [[[] for _ in STAGES] for _ in preds], [None]*len(preds)
    for i in range(a.runs + 3):                       # 3 warm-up runs
        for k, (p, t) in enumerate(zip(preds, times)):
            stage_ms, last_faces[k] = time_once(p, jpeg)
            assert len(last_faces[k]) == 1, last_faces[k]
            if i >= 3:
                for column, ms in zip(t, stage_ms): column.append(ms)
    totals = [report(p, t, faces, a) for p, t, faces in zip(preds, times, last_faces)]
    if len(totals) == 2: print(f"first / second model, total: {totals[0]/totals[1]:.2f}×")

if __name__ == '__main__':
    main()
