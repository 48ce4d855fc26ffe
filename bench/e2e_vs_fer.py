"""End to end against the `fer` package, in one sitting: decode, detect, classify, per photo, and video frames/s.

    python bench/e2e_vs_fer.py                      # the default model, 2 threads, 20 timed runs per photo per round
    python bench/e2e_vs_fer.py --checkpoint fast --rounds 3

Photos (JPEG bytes, decoded on every run as an upload would be): a 640x480 photo with one face (the astronaut), a
1200x630 group of six, and a 281x381 portrait (the first KDEF photo when $FER_NB_KDEF_DIR is set, else the astronaut's
head at that size). fer_nb (`Predictor.predict`) and `fer` (`FER().detect_emotions`, its default Haar detector and Keras
model) take turns: each round times every photo `--runs` times on one, then on the other, after 3 warm-ups each; the
medians over all rounds give the ratios (fer's ms / fer_nb's ms, so higher is better for fer_nb). Then a 640x360 clip with
six moving heads through fer_nb's video path (`process_video`: tracking, no writing): frames/s, with the default
key frames (every='auto') and with every frame analysed.

`fer` runs in a virtual environment of its own that this bench makes once (~/.cache/fer_nb/fer-venv: tensorflow-cpu and
fer's other runtime needs, then `pip install --no-deps fer`), never in the project's. Where that cannot be installed the
bench says why and times fer_nb alone.
Targets (issue #36): 640x480 >= 5x, group >= 8x with 6/6 faces, portrait >= 3x, video >= 60 frames/s.
"""
import json, os, statistics, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fer_nb.predict import Predictor
from fer_nb.apps import process_video
from fer_nb.synthetic import group_photo, jpeg_bytes, sample_frame, sample_photo, write_crowd_clip
from common import bench_args

VENV = Path(os.environ.get('FER_NB_FER_VENV', Path.home()/'.cache'/'fer_nb'/'fer-venv'))
FER_RUNTIME = ['tensorflow-cpu==2.21.0', 'tf-keras==2.21.0', 'opencv-python-headless<5', 'pandas', 'requests', 'pillow', 'matplotlib', 'moviepy==1.0.3']   # fer imports moviepy.editor (gone in moviepy 2)
# fer runs on Keras 2 (tf-keras, TF_USE_LEGACY_KERAS=1): its per-face predict() is faster there than on Keras 3 (100 against 119 ms on 640x480, 2026-12-07)
FER_ENV = dict(os.environ, TF_CPP_MIN_LOG_LEVEL='3', TF_USE_LEGACY_KERAS='1')

def fer_python()->tuple:
    "(the venv's python, None) once `fer` imports there; (None, why) when it cannot be made."
    py = VENV/'bin'/'python'
    check = lambda: subprocess.run([str(py), '-c', 'import fer.fer'], capture_output=True, text=True,
                                   env=FER_ENV, timeout=300)
    if py.exists() and check().returncode == 0: return py, None
    print(f"making {VENV} for the fer package (once)…", flush=True)
    steps = [[sys.executable, '-m', 'venv', str(VENV)],   # from the project's venv: a fresh venv on the same base Python
             [str(py), '-m', 'pip', 'install', '-q', *FER_RUNTIME], [str(py), '-m', 'pip', 'install', '-q', '--no-deps', 'fer==22.5.1']]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
        if r.returncode: return None, f"`{' '.join(cmd[-3:])}` failed: {(r.stderr.strip().splitlines() or ['?'])[-1][:200]}"
    r = check()
    return (py, None) if r.returncode == 0 else (None, f"fer does not import: {(r.stderr.strip().splitlines() or ['?'])[-1][:200]}")

# A fer server: reads "path runs" lines, answers "faces median_ms" lines, so that the two packages can take turns.
FER_SERVER = r"""
import os, sys, time, statistics
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '3')
import cv2, numpy as np, tensorflow as tf
threads = int(sys.argv[1])
tf.config.threading.set_intra_op_parallelism_threads(threads); tf.config.threading.set_inter_op_parallelism_threads(1); cv2.setNumThreads(threads)
from fer.fer import FER
det = FER(); print('ready', flush=True)
for line in sys.stdin:
    path, runs = line.split(); data = open(path, 'rb').read()
    f = lambda: det.detect_emotions(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR))
    for _ in range(3): n = len(f())
    ts = []
    for _ in range(int(runs)): t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    print(n, ' '.join(f'{x*1e3:.3f}' for x in ts), flush=True)
"""

def portrait()->bytes:
    "The 281x381 portrait: the first KDEF photo when $FER_NB_KDEF_DIR is set, else the astronaut's head at that size."
    kdef = os.environ.get('FER_NB_KDEF_DIR')
    photos = sorted(Path(kdef).rglob('*.[jJ][pP]*[gG]')) if kdef and Path(kdef).is_dir() else []
    if photos: return Path(photos[0]).read_bytes()
    return jpeg_bytes(sample_photo().crop((110, 0, 360, 340)).resize((281, 381), Image.BICUBIC))

def times(f, runs:int)->list:
    for _ in range(3): f()
    out = []
    for _ in range(runs): t = time.perf_counter(); f(); out.append((time.perf_counter() - t)*1e3)
    return out

def main():
    a = bench_args(__doc__, runs=20, extra=lambda ap: (ap.add_argument('--rounds', type=int, default=2, help='turns each (default 2)'),
                                                         ap.add_argument('--no-fer', action='store_true', help='time fer_nb alone'),
                                                         ap.add_argument('--yunet', default='auto', help="YuNet's runtime: auto | onnx | opencv (the one before issue #36)")))
    from fer_nb.faces import YuNetDetector
    pred = Predictor.load(a.checkpoint, runtime=a.runtime, detector=YuNetDetector(runtime=a.yunet))
    photos = {'640x480, 1 face': jpeg_bytes(sample_frame(640)), 'group 1200x630, 6 faces': jpeg_bytes(group_photo()[0]), 'portrait 281x381': portrait()}
    py, why = (None, 'asked not to (--no-fer)') if a.no_fer else fer_python()
    tmp = Path(tempfile.mkdtemp()); files = {}
    for i, (k, v) in enumerate(photos.items()): files[k] = tmp/f'{i}.jpg'; files[k].write_bytes(v)
    server = None
    if py:
        server = subprocess.Popen([str(py), '-c', FER_SERVER, str(a.threads)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                  stderr=subprocess.DEVNULL, env=FER_ENV)
        if server.stdout.readline().strip() != 'ready': server, why = None, 'the fer server did not start'
    if why: print(f"(fer skipped: {why})")
    ours, theirs, found = {k: [] for k in photos}, {k: [] for k in photos}, {}
    for r in range(a.rounds):
        for k, data in photos.items():
            found[k] = [len(pred.predict(data))]
            ours[k] += times(lambda: pred.predict(data), a.runs)
            if server:
                server.stdin.write(f"{files[k]} {a.runs}\n"); server.stdin.flush()
                n, *ms = server.stdout.readline().split(); theirs[k] += list(map(float, ms)); found[k].append(int(n))
    if server: server.stdin.close(); server.wait(60)
    print(f"end to end per photo, median of {a.rounds}x{a.runs} runs, {a.threads} threads, model {Path(pred.path).name}, "
          f"runtime {pred.runtime}, detector {pred.detector.name} ({getattr(pred.detector, 'runtime', '?')})")
    print(f"{'photo':26s} {'fer_nb ms':>10s} {'faces':>6s} {'fer ms':>10s} {'faces':>6s} {'ratio':>7s}")
    for k in photos:
        m = statistics.median(ours[k]); t = statistics.median(theirs[k]) if theirs[k] else float('nan')
        print(f"{k:26s} {m:10.1f} {found[k][0]:6d} {t:10.1f} {found[k][1] if len(found[k]) > 1 else -1:6d} {t/m:7.2f}x")
    clip = write_crowd_clip(tmp/'crowd.mp4', frames=150, faces=6, fps=25)
    process_video(clip, predictor=pred, max_frames=10)
    for every in ('auto', 1):
        v = process_video(clip, predictor=pred, every=every)
        print(f"video 640x360, 6 faces, every={every}: {v['fps']:.1f} frames/s ({v['faces']} faces in {v['frames']} frames, {v['tracks']} tracks)")

if __name__ == '__main__': main()
