"""A corpus through `fer-nb corpus` on each engine, in one sitting: faces/s, frames/s and memory over the run.

    python bench/corpus.py                        # 300 photos + two one-minute videos, the default model
    python bench/corpus.py --photos 100 --video-seconds 20 --checkpoint fast

The corpus is generated from the sample photo (fer_nb.synthetic): single-face photos at random places and sizes, and
640x360 crowd clips at 25 frames/s with 3 moving heads, sampled at 5 frames/s (--fps) in 20-second segments.
Runs, each a fresh `fer-nb corpus` process into its own folder:
  local-1    the local engine held to 1 thread (OMP_NUM_THREADS=1, OPENCV_FOR_THREADS_NUM=1)
  local-2    the local engine with 2 threads (the default on this machine)
  ray-1      Ray Data on a cluster the command starts here, 1 worker of 1 CPU
  ray-2      the same, 2 workers of 1 CPU each
For each: the whole command's time (Ray's start included), and the steady rate, from the first results written to the last
(parts are written after every unit: --save-every 0). Memory: the summed PSS of the command and every process under it
(Ray's raylet, object store and workers included; a shared page counts once), sampled every 0.5 s, at the quarters of
the run and its peak. Targets (issue #35): ray-1 within 15 % of local-1; ray-2 ≥ 1.7x ray-1; memory flat.
"""
import argparse, os, shutil, subprocess, sys, tempfile, time
from pathlib import Path

import pandas as pd
import psutil

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

def make_corpus(root:Path, photos:int, video_seconds:int)->Path:
    "`photos` single-face photos and two crowd clips of `video_seconds` at 25 frames/s."
    from fer_nb.synthetic import make_photo_folder, write_crowd_clip
    classes = [f'c{i}' for i in range(10)]
    make_photo_folder(root/'photos', per_class=max(1, photos//len(classes)), classes=classes, no_face=0)
    (root/'videos').mkdir(parents=True, exist_ok=True)
    for k in (1, 2): write_crowd_clip(root/'videos'/f'crowd{k}.mp4', frames=25*video_seconds, faces=3, fps=25)
    return root

def tree_memory(proc:psutil.Process)->int:
    "Memory of a process and all its descendants, in bytes: the sum of their PSS (a page shared by n processes counts 1/n in each)."
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try: total += p.memory_full_info().pss
        except psutil.Error: pass
    return total

def run(name:str, cmd:list, env:dict, out:Path)->dict:
    "Run one corpus command; time it, sample its memory, and read its rate from the part files it writes."
    t0 = time.perf_counter(); p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ps, mem = psutil.Process(p.pid), []
    while p.poll() is None:
        try: mem.append((time.perf_counter() - t0, tree_memory(ps)))
        except psutil.Error: pass
        time.sleep(0.5)
    wall = time.perf_counter() - t0; err = p.stderr.read()
    if p.returncode: raise SystemExit(f"{name} failed ({p.returncode}):\n{err[-2000:]}")
    parts = sorted(out.glob('part-*.parquet'), key=lambda f: f.stat().st_mtime)
    t = pd.concat([pd.read_parquet(f).assign(_t=f.stat().st_mtime) for f in parts])
    faces, frames = int((t.status == 'ok').sum()), t[t.kind == 'video'][['path', 'frame']].drop_duplicates().shape[0]
    first, last = parts[0].stat().st_mtime, parts[-1].stat().st_mtime
    later = t[t._t > first]   # what was written after the first part: the steady state, Ray's start and model loading excluded
    steady = (later.status == 'ok').sum()/max(last - first, 1e-9)
    m = pd.DataFrame(mem, columns=['t', 'mem'])
    q = [m[m.t >= f*wall].mem.iloc[0] if (m.t >= f*wall).any() else m.mem.iloc[-1] for f in (0.25, 0.5, 0.75)] if len(m) else [0, 0, 0]
    return dict(run=name, seconds=round(wall, 1), faces=faces, frames=frames, faces_s=round(faces/wall, 1), frames_s=round(frames/wall, 1),
                steady_faces_s=round(float(steady), 1), mem_q1_mb=round(q[0]/2**20), mem_q2_mb=round(q[1]/2**20), mem_q3_mb=round(q[2]/2**20),
                mem_peak_mb=round(m.mem.max()/2**20) if len(m) else 0)

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument('--photos', type=int, default=300); ap.add_argument('--video-seconds', type=int, default=60)
    ap.add_argument('--checkpoint', help='default: $FER_NB_CHECKPOINT or the default shipped model')
    ap.add_argument('--fps', type=float, default=5.0); ap.add_argument('--segment', type=float, default=20.0)
    ap.add_argument('--runs', default='local-1,local-2,ray-1,ray-2', help='which runs, comma-separated')
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix='corpus-bench-'))
    try:
        corpus = make_corpus(work/'corpus', a.photos, a.video_seconds)
        n_photos = len(list((corpus/'photos').rglob('*.jpg')))
        print(f"corpus: {n_photos} photos, 2 videos of {a.video_seconds} s (640x360, 25 frames/s, 3 faces), sampled at {a.fps:g} frames/s; "
              f"{os.cpu_count()} CPUs; model {a.checkpoint or 'default'}", flush=True)
        base = dict(os.environ, PYTHONWARNINGS='ignore')
        one = dict(base, OMP_NUM_THREADS='1', OPENCV_FOR_THREADS_NUM='1')
        runs = {'local-1': ([], one), 'local-2': ([], base), 'ray-1': (['--engine', 'ray', '--workers', '1'], base),
                'ray-2': (['--engine', 'ray', '--workers', '2'], base)}
        rows = []
        for name in a.runs.split(','):
            extra, env = runs[name]; out = work/name
            cmd = [str(BIN/'fer-nb'), 'corpus', str(corpus), '--out', str(out), '--fps', str(a.fps), '--segment', str(a.segment),
                   '--save-every', '0', '--quiet', *extra, *(['--model', a.checkpoint] if a.checkpoint else [])]
            rows.append(run(name, cmd, env, out)); print(rows[-1], flush=True)
        df = pd.DataFrame(rows).set_index('run'); print(); print(df.to_string())
        r = df.steady_faces_s
        if {'local-1', 'ray-1'} <= set(r.index): print(f"\nray-1 / local-1, steady faces/s: {r['ray-1']/r['local-1']:.2f} (target ≥ 0.85)")
        if {'ray-1', 'ray-2'} <= set(r.index): print(f"ray-2 / ray-1, steady faces/s: {r['ray-2']/r['ray-1']:.2f} (target ≥ 1.7)")
        if {'ray-1', 'ray-2'} <= set(df.index): print(f"ray-2 / ray-1, whole command: {df.faces_s['ray-2']/df.faces_s['ray-1']:.2f}")
    finally: shutil.rmtree(work, ignore_errors=True)

if __name__ == '__main__': main()
