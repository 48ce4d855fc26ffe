"""Inference latency of a fer_nb checkpoint: ms per face at batch 1 and images/s at batch 64.

    python bench/latency.py                          # the shipped model (models/DEFAULT), 2 CPU threads
    python bench/latency.py --checkpoint models/x.pt --threads 2
    python bench/latency.py --model resnet_fer       # an untrained registered model (same speed as trained)
    python bench/latency.py --device cuda            # on a GPU when there is one
    python bench/latency.py --no-compile --card      # also merge the numbers into the checkpoint's card (its `latency`),
                                                     # the one place the README's table and the notebooks read them from

Variants (each checked against eager fp32 on a batch: max abs logit difference and argmax agreement):
  eager            PyTorch fp32, NCHW
  channels_last    PyTorch fp32, NHWC memory format
  jit_frozen       torch.jit.trace + freeze + optimize_for_inference (conv+BN folded), channels_last
  compile          torch.compile (inductor; needs a C++ compiler; skipped with --no-compile)
  onnxruntime      ONNX Runtime CPU (or CUDA) execution provider, all graph optimisations
  cuda_bf16        (CUDA only) autocast bf16, channels_last
Input: N×1×S×S float32 in [0, 1], the ONNX export's contract (S: the model's input size, 48 unless trained otherwise).
"""
import argparse, json, os, statistics, sys, tempfile, time, warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import numpy as np
import torch

from fer_nb.data import FerError
from fer_nb.model import create_model, load_checkpoint, shipped_model_path


def timed(fn, x, sync, warmup, seconds, min_iters=5):
    "Median seconds per call of fn(x) over ~`seconds` of calls."
    for _ in range(warmup): fn(x)
    sync(); times, t_end = [], time.perf_counter() + seconds
    while len(times) < min_iters or time.perf_counter() < t_end:
        t = time.perf_counter(); fn(x); sync(); times.append(time.perf_counter() - t)
    return statistics.median(times)


def variants(model, device, threads, no_compile):
    "(name, callable taking a float N×1×S×S tensor → logits as numpy) for every variant that builds here."
    out, S = [], model.in_size
    def torch_fn(m, cl=False, autocast=None):
        @torch.inference_mode()
        def f(x):
            x = x.to(device, non_blocking=True)
            if cl: x = x.contiguous(memory_format=torch.channels_last)
            if autocast:
                with torch.autocast(device.type, dtype=autocast): return m(x).float()
            return m(x)
        return f
    out.append(('eager', torch_fn(model)))
    cl_model = model.to(memory_format=torch.channels_last)
    out.append(('channels_last', torch_fn(cl_model, cl=True)))
    try:
        with warnings.catch_warnings(), torch.inference_mode():
            warnings.simplefilter('ignore')
            ex = torch.rand(1, 1, S, S, device=device).contiguous(memory_format=torch.channels_last)
            jm = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(cl_model, ex, check_trace=False).eval()))
        out.append(('jit_frozen', torch_fn(jm, cl=True)))
    except Exception as e: print(f'  jit_frozen: skipped ({str(e).splitlines()[0][:100]})', file=sys.stderr)
    if not no_compile:
        try:
            cm = torch.compile(cl_model, dynamic=False)
            f = torch_fn(cm, cl=True)
            with warnings.catch_warnings():
                warnings.simplefilter('ignore')
                for n in (1, 64, 256): f(torch.rand(n, 1, S, S))   # compile each shape we will time
            out.append(('compile', f))
        except Exception as e: print(f'  compile: skipped ({str(e).splitlines()[0][:100]})', file=sys.stderr)
    if device.type == 'cuda':
        out.append(('cuda_bf16', torch_fn(cl_model, cl=True, autocast=torch.bfloat16)))
    try:
        import onnxruntime as ort
        from fer_nb.onnx_model import export_onnx
        path = Path(tempfile.mkdtemp())/'model.onnx'
        export_onnx(model.to(memory_format=torch.contiguous_format).cpu(), path)
        model.to(device)
        so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        prov = ['CUDAExecutionProvider', 'CPUExecutionProvider'] if device.type == 'cuda' else ['CPUExecutionProvider']
        sess = ort.InferenceSession(str(path), so, providers=[p for p in prov if p in ort.get_available_providers()])
        out.append((f"onnxruntime", lambda x: sess.run(None, {'faces': x.cpu().numpy()})[0]))
    except Exception as e: print(f'  onnxruntime: skipped ({str(e).splitlines()[0][:100]})', file=sys.stderr)
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--checkpoint', help='a .pt checkpoint (default: the shipped model)')
    p.add_argument('--model', help='benchmark an untrained registered model instead (e.g. resnet_fer)')
    p.add_argument('--threads', type=int, default=2, help='CPU threads (default 2)')
    p.add_argument('--device', default='cpu', help='cpu | cuda | auto')
    p.add_argument('--seconds', type=float, default=3.0, help='timing budget per measurement')
    p.add_argument('--no-compile', action='store_true', help='skip torch.compile (slow to build)')
    p.add_argument('--json', action='store_true', help='print the results as JSON')
    p.add_argument('--card', action='store_true', help="merge the numbers into the checkpoint's card (latency.<threads>_thread[s])")
    a = p.parse_args(argv)
    if a.card and (a.model or a.device != 'cpu'): print('latency: error: --card records CPU numbers of a checkpoint', file=sys.stderr); return 2
    torch.set_num_threads(a.threads)
    device = torch.device('cuda' if a.device == 'auto' and torch.cuda.is_available() else a.device if a.device != 'auto' else 'cpu')
    try:
        if a.model: model, name = create_model(a.model).eval(), f'{a.model} (untrained)'
        else:
            path = Path(a.checkpoint) if a.checkpoint else shipped_model_path()
            model, name = load_checkpoint(path)[0], str(path)
    except FerError as e:
        print(f'latency: error: {e}', file=sys.stderr); return 2
    model = model.to(device).eval()
    sync = torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)
    what = torch.cuda.get_device_name(device) if device.type == 'cuda' else f'{torch.get_num_threads()} CPU threads'
    print(f'{name} on {what}; torch {torch.__version__}')
    torch.manual_seed(0)
    S = model.in_size   # the side the face step crops at for this model
    check = torch.randint(0, 256, (64, 1, S, S), dtype=torch.uint8).float()/255
    with torch.inference_mode(): ref = model(check.to(device)).float().cpu().numpy()
    rows = []
    for vname, fn in variants(model, device, a.threads, a.no_compile):
        got = np.asarray(torch.as_tensor(fn(check)).float().cpu())
        diff, agree = float(np.abs(got - ref).max()), float((got.argmax(1) == ref.argmax(1)).mean())
        ms1 = timed(fn, torch.rand(1, 1, S, S), sync, 10, a.seconds)*1e3
        s64 = timed(fn, torch.rand(64, 1, S, S), sync, 3, a.seconds)
        rows.append(dict(variant=vname, ms_per_face_b1=round(ms1, 3), images_per_s_b64=round(64/s64, 1),
                         max_abs_diff=diff, argmax_agree=agree))
        print(f'  {vname:14s} batch 1: {ms1:7.2f} ms/face   batch 64: {64/s64:8.0f} img/s   '
              f'max |Δlogit| {diff:.1e}  argmax agree {agree:.3f}', flush=True)
    best = min(rows, key=lambda r: r['ms_per_face_b1'])
    print(f"fastest at batch 1: {best['variant']} {best['ms_per_face_b1']:.2f} ms/face "
          f"({'meets' if best['ms_per_face_b1'] <= 3 else 'misses'} the 3 ms goal)")
    if a.json: print(json.dumps(dict(checkpoint=name, device=what, results=rows)))
    if a.card: print('card:', write_latency(path, rows, a.threads))
    return 0


def write_latency(checkpoint, rows, threads):
    "Merge the measured rows into the checkpoint's card: latency.<n>_threads.<variant>_ms_per_face_batch1 and _img_s_batch64."
    import platform
    from fer_nb.cards import read_card, write_card
    latency = dict(read_card(checkpoint).get('latency', {}))
    latency[f'{threads}_thread' + ('s' if threads > 1 else '')] = {
        **{f"{r['variant']}_ms_per_face_batch1": round(r['ms_per_face_b1'], 2) for r in rows},
        **{f"{r['variant']}_img_s_batch64": round(r['images_per_s_b64']) for r in rows},
        'measured': time.strftime('%Y-%m-%d') + ', python bench/latency.py --card'}
    latency.setdefault('machine', f'{platform.machine()} {platform.processor() or "CPU"}, {os.cpu_count()} cores; torch {torch.__version__}')
    return write_card([], checkpoint, latency=latency)


if __name__ == '__main__':
    sys.exit(main())
