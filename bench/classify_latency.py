"""Where `Predictor.classify`'s time goes for one face: the Predictor beside its own ONNX Runtime session and variants of it.

    python bench/classify_latency.py [--checkpoint NAME_OR_PATH] [--reps 5]

Interleaved in one process, 200 calls per repetition, median of the repetitions' medians (ms per call, batch 1):
classify (cast, session, softmax), the Predictor's session alone (intra-op threads sleep when idle: allow_spinning 0),
the same export with spinning threads, and with one intra-op thread."""
import argparse, time
import numpy as np, onnxruntime as ort, torch
from fer_nb.predict import Predictor

p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
p.add_argument('--checkpoint'); p.add_argument('--reps', type=int, default=5); p.add_argument('--threads', type=int, default=2)
a = p.parse_args()
torch.set_num_threads(a.threads)
pred = Predictor.load(a.checkpoint, detector='none')
side = pred.input_size
crop = np.random.default_rng(0).integers(0, 256, (1, side, side), dtype=np.uint8)
x = crop[:, None].astype(np.float32)/255

def session(threads, spin):
    so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
    so.add_session_config_entry('session.intra_op.allow_spinning', '1' if spin else '0')
    return ort.InferenceSession(pred.session._model_path, so, providers=['CPUExecutionProvider'])

variants = {'Predictor.classify': lambda: pred.classify(crop), "its session (threads sleep)": lambda: pred.session.run(None, {'faces': x})}
for name, s in ((f'{a.threads} threads, spinning', session(a.threads, True)), ('1 thread', session(1, False))):
    variants[name] = (lambda s: lambda: s.run(None, {'faces': x}))(s)
times = {k: [] for k in variants}
for _ in range(a.reps):
    for k, f in variants.items():
        for _ in range(20): f()
        t = [time.perf_counter()]
        for _ in range(200): f(); t.append(time.perf_counter())
        times[k].append(np.median(np.diff(t))*1e3)
print(f'{pred}: one {side}×{side} face, {a.threads} threads')
for k, v in times.items(): print(f'  {k:28s} {np.median(v):6.3f} ms (min {min(v):.3f})')
