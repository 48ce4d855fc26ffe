"""End-to-end latency of the demo on one 640×480 photo: load (decode JPEG) + find faces (detect, align, crop) + classify, and where the time goes.

    python bench/demo_latency.py [--threads 2] [--runs 30] [--detector yunet] [--checkpoint PATH]

The photo is scikit-image's astronaut, cropped to 4:3 and resized to 640×480, encoded as a JPEG (quality 90),
so every run decodes it as a user upload would be. Prints the median ms of each stage and the total."""
import statistics, time

import numpy as np

from fer_nb.predict import Predictor
from fer_nb.faces import load_photo
from fer_nb.synthetic import jpeg_bytes, sample_frame
from common import bench_args

def main():
    a = bench_args(__doc__, runs=30, extra=lambda ap: ap.add_argument('--detector', default='yunet'))
    jpeg = jpeg_bytes(sample_frame(640), 90)
    pred = Predictor.load(a.checkpoint, detector=a.detector, device='cpu', runtime=a.runtime)
    stages = {k: [] for k in ('load', 'find faces', 'classify', 'total (predict)')}
    for i in range(a.runs + 3):                       # 3 warm-up runs
        t0 = time.perf_counter(); im, s = load_photo(jpeg)
        t1 = time.perf_counter(); found = pred.find(im, s)
        t2 = time.perf_counter(); probs = pred.classify(np.stack([f.crop for f in found]))
        t3 = time.perf_counter(); faces = pred.predict(jpeg)
        t4 = time.perf_counter()
        if i >= 3:
            for k, v in zip(stages, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)): stages[k].append(v*1e3)
    assert len(faces) == 1, faces
    print(f"640×480 JPEG, {len(faces)} face ({faces[0].label} {faces[0].confidence:.0%}), detector={a.detector}, runtime={pred.runtime}, "
          f"model={pred.model.arch['name']}, {a.threads} threads (torch and OpenCV), median of {a.runs} runs")
    total = statistics.median(stages['total (predict)'])
    for k, v in stages.items():
        med = statistics.median(v)
        print(f"  {k:16s} {med:7.1f} ms" + ('' if k.startswith('total') else f"  ({med/total:5.1%})"))

if __name__ == '__main__':
    main()
