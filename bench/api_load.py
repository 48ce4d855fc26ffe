"""Load on the HTTP API of `fer-nb serve`: C concurrent clients, each posting K photos, against one model process.

    python bench/api_load.py C [--per-client K | --total N] [--url http://127.0.0.1:8866/] [--serve-args '...']

The photos are a mix: a 640×480 photo, the group of six (fer_nb.synthetic.group_photo), a 12 MP JPEG and a
broken (truncated) JPEG, which must come back 400. It prints throughput, latency p50/p95/p99, the answers
counted by status (and which of them were unexpected), the server's memory (PSS of the supervisor, the model
process, the web process and its kernels) before and after, and the throughput of `Predictor.predict`
looped in this process over the same photos. Traffic stays on 127.0.0.1; every loop is bounded in count
and time. Without --url it starts `fer-nb serve` on a free port and stops it afterwards."""
import argparse, http.client, io, math, os, shlex, signal, subprocess, sys, threading, time, urllib.parse
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

def photos()->dict:
    "{kind: (bytes, expected status)} for the mix."
    from PIL import Image
    from fer_nb.synthetic import group_photo, jpeg_bytes, sample_frame, sample_photo
    rng = np.random.default_rng(0)
    big = Image.fromarray(rng.integers(60, 200, (3000//16, 4000//16, 3), dtype=np.uint8)).resize((4000, 3000), Image.BILINEAR)
    big.paste(sample_photo().resize((1500, 1500)), (1200, 700))
    frame = jpeg_bytes(sample_frame(640))
    return {'640x480': (frame, 200), 'group6': (jpeg_bytes(group_photo()[0]), 200),
            '12MP': (jpeg_bytes(big, 90), 200), 'broken': (frame[:len(frame)//3], 400)}

def server_tree_mb(pid:int)->float:
    "Proportional memory (PSS, MB) of a process and all its descendants: shared libraries counted once overall."
    import psutil
    try: root = psutil.Process(pid); procs = [root] + root.children(recursive=True)
    except psutil.NoSuchProcess: return float('nan')
    total = 0
    for p in procs:
        try: total += p.memory_full_info().pss
        except (psutil.NoSuchProcess, psutil.AccessDenied): pass
    return total/2**20

def wait_health(url:str, proc=None, timeout:float=180)->bool:
    import json, urllib.request
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and (proc is None or proc.poll() is None):
        try:
            with urllib.request.urlopen(url + 'v1/health', timeout=2) as r:
                if r.status == 200 and 'model' in json.loads(r.read()): return True
        except Exception: time.sleep(0.2)
    return False

def client(url:str, jobs:list, deadline:float)->list:
    "Post each (kind, body, expected) in turn on one keep-alive connection; [(kind, status, expected, seconds)]."
    u = urllib.parse.urlparse(url); conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120); out = []
    for kind, body, want in jobs:
        if time.monotonic() > deadline: break
        t = time.perf_counter()
        try:
            conn.request('POST', '/v1/predict', body, {'Content-Type': 'application/octet-stream'})
            r = conn.getresponse(); r.read(); status = r.status
        except (OSError, http.client.HTTPException) as e:
            status = type(e).__name__; conn.close(); conn = http.client.HTTPConnection(u.hostname, u.port, timeout=120)
        out.append((kind, status, want, time.perf_counter() - t))
    conn.close(); return out

def in_process(pred, mix:dict, n:int, deadline:float)->tuple:
    "(photos, seconds) of Predictor.predict looped over the mix in this process."
    from fer_nb.data import FerError
    for body, _ in mix.values():                      # warm up: the first call of each size sets up the detector
        try: pred.predict(body)
        except FerError: pass
    kinds, t0, done = list(mix), time.perf_counter(), 0
    while done < n and time.monotonic() < deadline:
        try: pred.predict(mix[kinds[done % len(kinds)]][0])
        except FerError: pass
        done += 1
    return done, time.perf_counter() - t0

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('clients', type=int, nargs='?', default=32, help='concurrent clients C (default 32)')
    ap.add_argument('--per-client', type=int, default=12, help='photos each client posts K (default 12)')
    ap.add_argument('--total', type=int, help='total requests instead (K = total/C, rounded up)')
    ap.add_argument('--url', help='a running `fer-nb serve`; default: start one')
    ap.add_argument('--serve-args', default='', help='extra `fer-nb serve` options when this script starts it')
    ap.add_argument('--max-seconds', type=float, default=900, help='stop posting after this long')
    ap.add_argument('--loop', type=int, default=200, help='photos in each in-process loop (default 200; one loop before the API run, one after)')
    a = ap.parse_args()
    per_client = math.ceil(a.total/a.clients) if a.total else a.per_client
    mix = photos(); kinds = list(mix)
    from fer_nb.predict import Predictor
    pred = Predictor.load(runtime='onnx')
    # the machine's load changes (another core may be training): the in-process loop runs before and after the API run
    loops = [in_process(pred, mix, a.loop, time.monotonic() + 300)]
    print('photos:', ', '.join(f'{k} {len(b)/1e6:.2f} MB' for k, (b, _) in mix.items()))
    print(f'load: os.getloadavg() = {os.getloadavg()[0]:.1f} (another core may be training a model)')
    proc = None; url = a.url
    if not url:
        from fer_nb.model_service import free_port
        port = free_port(); url = f'http://127.0.0.1:{port}/'
        cmd = [sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(port), '--pool', '1', *shlex.split(a.serve_args)]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        if not wait_health(url, proc): print('fer-nb serve did not start'); return 2
    url = url.rstrip('/') + '/'
    try:
        # warm-up at full concurrency (each client posts one of each photo): the detector's setup and the worker
        # threads' first allocations are paid before "before" is measured
        warm = [[(k, *mix[k]) for k in kinds] for _ in range(a.clients)]
        with ThreadPoolExecutor(a.clients) as pool: list(pool.map(lambda j: client(url, j, time.monotonic() + 120), warm))
        pid = proc.pid if proc else None
        before = server_tree_mb(pid) if pid else float('nan')
        jobs = [[(kinds[(c + i) % len(kinds)], *mix[kinds[(c + i) % len(kinds)]]) for i in range(per_client)] for c in range(a.clients)]
        deadline = time.monotonic() + a.max_seconds
        t0 = time.perf_counter()
        with ThreadPoolExecutor(a.clients) as pool: results = [r for rs in pool.map(lambda j: client(url, j, deadline), jobs) for r in rs]
        secs = time.perf_counter() - t0
        time.sleep(1); after = server_tree_mb(pid) if pid else float('nan')
    finally:
        if proc:
            os.killpg(proc.pid, signal.SIGTERM)
            try: proc.wait(30)
            except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL)
    lat = np.array([r[3] for r in results])*1000
    by_status = {}
    for _, s, _, _ in results: by_status[s] = by_status.get(s, 0) + 1
    unexpected = [(k, s) for k, s, w, _ in results if s != w]
    print(f'API: {len(results)} requests from {a.clients} clients in {secs:.1f} s: {len(results)/secs:.1f} requests/s')
    print(f'latency ms: p50 {np.percentile(lat, 50):.0f}  p95 {np.percentile(lat, 95):.0f}  p99 {np.percentile(lat, 99):.0f}  max {lat.max():.0f}')
    for k in kinds:
        l = np.array([r[3] for r in results if r[0] == k])*1000
        if len(l): print(f'  {k:8s} n={len(l):4d}  p50 {np.percentile(l, 50):6.0f}  p95 {np.percentile(l, 95):6.0f} ms')
    print('status counts:', dict(sorted(by_status.items(), key=str)), f'unexpected: {len(unexpected)}', unexpected[:5] or '')
    if proc: print(f'server memory (PSS, MB): before {before:.0f}, after {after:.0f} ({after - before:+.0f})')
    loops.append(in_process(pred, mix, a.loop, time.monotonic() + 300))
    rates = [n/t for n, t in loops]; loop_rate = sum(rates)/len(rates)
    print(f'in-process Predictor.predict loop (one thread, same photos): {rates[0]:.1f} photos/s before, {rates[1]:.1f} after: {loop_rate:.1f} photos/s')
    print(f'API throughput / in-process loop: {len(results)/secs/loop_rate:.2f} (target ≥ 0.8)')
    return 0 if not unexpected else 1

if __name__ == '__main__': sys.exit(main())
