"What the Predictor benches share: the --threads/--runs/--checkpoint/--runtime options, and torch and OpenCV held to those threads."
import argparse

def bench_args(doc:str, # the bench's docstring (its first line is the description)
               runs:int, # default number of timed runs
               extra=None # a function adding the bench's own options to the parser
              )->argparse.Namespace:
    "Parse the common options (and the bench's own), then set torch's and OpenCV's thread counts."
    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument('--threads', type=int, default=2, help='torch and OpenCV threads (default 2)')
    ap.add_argument('--runs', type=int, default=runs, help=f'timed runs (default {runs})')
    ap.add_argument('--checkpoint', help='default: $FER_NB_CHECKPOINT or the shipped model')
    ap.add_argument('--runtime', default='auto', help='auto | torch | onnx')
    if extra: extra(ap)
    a = ap.parse_args()
    import cv2, torch
    torch.set_num_threads(a.threads); cv2.setNumThreads(a.threads)
    return a
