"""Face step side by side: YuNet vs Haar (vs MTCNN when facenet-pytorch is installed), end to end, plus video.

    python bench/faces_speed.py [--threads 2] [--runs 20] [--checkpoint PATH]

Photos (all JPEG-encoded in memory, decoded on every run as an upload would be): the astronaut (512²), a 640×480 crop of it,
a 1200×630 group photo of six astronauts (sizes and tilts vary), a 960×800 grid of 30 faces of about 30 px, and a 12-MP
(4000×3000) upscale. Per detector: faces found and median ms per photo through `Predictor.predict` (decode, detect, align,
classify), and the same for the `fer` package (Haar + its Keras model) when a Python with `fer` installed is given with
--fer-python (a scratch venv: `pip install fer tensorflow-cpu`; never a fer_nb dependency). Then a 640×360 clip with six moving faces through `process_video` (tracking, annotation, mp4 writing): frames/s."""
import os, statistics, sys, tempfile, time
os.environ.setdefault('OMP_WAIT_POLICY', 'PASSIVE')   # torch's threads sleep after MTCNN instead of spinning on the cores the next detector needs
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_nb.predict import Predictor, sample_path
from fer_nb.apps import process_video
from fer_nb.synthetic import face_grid, group_photo, jpeg_bytes, sample_frame, write_crowd_clip
from common import bench_args

def photos(a):
    "name → JPEG bytes."
    return {'astronaut 512²': jpeg_bytes(a), '640×480': jpeg_bytes(sample_frame(640)),
            'group 1200×630 (6)': jpeg_bytes(group_photo(a)[0]), 'grid 960×800 (30)': jpeg_bytes(face_grid(a)),
            '12 MP 4000×3000': jpeg_bytes(a.resize((4000, 3000), Image.BICUBIC), 85)}

FER_SCRIPT = r"""
import sys, time, statistics, json, os
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import cv2, numpy as np, tensorflow as tf
threads, runs = int(sys.argv[1]), int(sys.argv[2])
tf.config.threading.set_intra_op_parallelism_threads(threads); tf.config.threading.set_inter_op_parallelism_threads(1); cv2.setNumThreads(threads)
from fer.fer import FER
det = FER()
out = {}
for path in sys.argv[3:]:
    data = open(path, 'rb').read()
    f = lambda: det.detect_emotions(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    n = len(f()); ts = []
    for _ in range(runs): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    out[os.path.basename(path)] = (n, statistics.median(ts)*1e3)
print(json.dumps(out))
"""

def fer_peer(python, ph, threads, runs):
    "name → (faces, ms) from the `fer` package run by another Python; {} when that fails."
    import json, subprocess
    with tempfile.TemporaryDirectory() as tmp:
        paths = []
        for i, (name, data) in enumerate(ph.items()):
            paths.append(Path(tmp)/f'{i}.jpg'); paths[-1].write_bytes(data)
        r = subprocess.run([python, '-c', FER_SCRIPT, str(threads), str(runs), *map(str, paths)], capture_output=True, text=True, timeout=1800)
        if r.returncode != 0: print('(fer package failed:', (r.stderr.strip().splitlines() or ['?'])[-1], ')'); return {}
        res = json.loads(r.stdout.strip().splitlines()[-1])
        return {name: res[f'{i}.jpg'] for i, name in enumerate(ph)}

def median_ms(f, runs):
    f(); ts = []
    for _ in range(runs): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return statistics.median(ts)*1e3

def main():
    a = bench_args(__doc__, runs=20, extra=lambda ap: ap.add_argument(
        '--fer-python', default='/tmp/fervenv/bin/python', help='a Python with the `fer` package (skipped if absent)'))
    astro = Image.open(sample_path()).convert('RGB')
    ph = photos(astro)
    dets = ['yunet', 'haar']
    try: import facenet_pytorch; dets.append('mtcnn')
    except ImportError: print('(mtcnn skipped: facenet-pytorch not installed)')
    preds = {d: Predictor.load(a.checkpoint, detector=d, device='cpu', runtime=a.runtime) for d in dets}
    peer = fer_peer(a.fer_python, ph, a.threads, max(3, a.runs//2)) if Path(a.fer_python).exists() else {}
    if not peer: print(f"(fer package skipped: no working {a.fer_python})")
    print(f"end to end per photo (decode, detect, align/crop, classify), median of {a.runs} runs, {a.threads} threads, runtime={preds['yunet'].runtime}")
    print(f"{'photo':22s}" + ''.join(f"{d:>22s}" for d in dets) + (f"{'fer package':>22s}" if peer else ''))
    for name, data in ph.items():
        cells = []
        for d in dets:
            runs = a.runs if d != 'mtcnn' else max(3, a.runs//5)
            n = len(preds[d].predict(data)); ms = median_ms(lambda: preds[d].predict(data), runs)
            cells.append(f"{n:3d} faces {ms:7.1f} ms")
        if peer: cells.append(f"{peer[name][0]:3d} faces {peer[name][1]:7.1f} ms")
        print(f"{name:22s}" + ''.join(f"{c:>22s}" for c in cells))
    with tempfile.TemporaryDirectory() as tmp:
        src = write_crowd_clip(Path(tmp)/'six.mp4')
        for d in dets[:2]:
            s = process_video(src, Path(tmp)/'out.mp4', Path(tmp)/'faces.csv', preds[d])
            print(f"video 640×360, 6 faces, {d}: {s['frames']} frames, {s['faces']} faces, {s['tracks']} tracks, {s['fps']:.1f} frames/s (annotated mp4 + csv)")

if __name__ == '__main__':
    main()
