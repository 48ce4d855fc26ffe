"""A two-node Ray cluster on this machine, for tests/test_corpus.py: run inside a network namespace that has only
loopback and a PID namespace of its own (`unshare -n -p -f --mount-proc`), so that every Ray process talks on
127.0.0.1 only and all of them end when this script does (it is the namespace's first process).

    python tests/ray_cluster.py WORK CHECKPOINT INPUT...

Starts a head node and a worker node (separate raylets, one CPU each), then runs `fer-nb corpus --engine ray` three times:
  ray1: a plain run over both nodes;
  ray2: the worker node's raylet is killed (SIGKILL) once the first results are written; the run must still finish;
  ray3: the driver itself is killed once the first results are written, then the same command is run again.
Prints one JSON line: the nodes (id prefix → role) and each run's exit code, seconds and stderr tail.
The checks on the output folders (WORK/ray1, ray2, ray3) are the test's."""
import json, os, secrets, signal, subprocess, sys, tempfile, time
from pathlib import Path

work, checkpoint, inputs = Path(sys.argv[1]), sys.argv[2], sys.argv[3:]
BIN = Path(sys.executable).parent
HEAD, WORKER_PORT = '127.0.0.1:6380', 6391
subprocess.run(['ip', 'link', 'set', 'lo', 'up'], check=True)
# Token authentication, as Ray 2.60 has by default for a cluster it starts; every process of this cluster shares the token.
os.environ.update(RAY_AUTH_MODE='token', RAY_AUTH_TOKEN=secrets.token_hex(32), RAY_USAGE_STATS_ENABLED='0')   # before Ray is imported
env = dict(os.environ)
temp = tempfile.mkdtemp(prefix='rayt', dir='/tmp')   # short: Ray's socket paths must fit in 107 characters
common = ['--node-ip-address', '127.0.0.1', '--num-cpus', '1', '--disable-usage-stats', '--temp-dir', str(temp)]
report = {'temp_dir': temp}

def ray(*args):
    r = subprocess.run([str(BIN/'ray'), *args], env=env, capture_output=True, text=True, timeout=180)
    if r.returncode: raise SystemExit(f"ray {' '.join(args)} failed:\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")

def corpus(out, *extra):
    return [str(BIN/'fer-nb'), 'corpus', *inputs, '--out', str(work/out), '--engine', 'ray', '--address', HEAD, '--model', checkpoint,
            '--fps', '5', '--segment', '2', '--save-every', '0.5', '--quiet', *extra]

def run(name, cmd, kill=None):
    "Run a corpus command; `kill(proc)` is called once its first part file is written."
    t0 = time.time()
    p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    if kill:
        while p.poll() is None and not list((work/name.split('+')[0]).glob('part-*.parquet')): time.sleep(0.1)
        if p.poll() is None: kill(p); report[f'{name} killed at'] = round(time.time() - t0, 1)
    out, err = p.communicate(timeout=400)
    report[name] = dict(rc=p.returncode, seconds=round(time.time() - t0, 1), stderr=err[-1500:])

try:
    ray('start', '--head', '--port', HEAD.split(':')[1], '--include-dashboard', 'false', *common)
    ray('start', '--address', HEAD, '--node-manager-port', str(WORKER_PORT), *common)
    import ray as _ray
    _ray.init(address=HEAD, log_to_driver=False)
    report['nodes'] = {n['NodeID'][:12]: 'worker' if n['NodeManagerPort'] == WORKER_PORT else 'head' for n in _ray.nodes() if n['Alive']}
    _ray.shutdown()
    run('ray1', corpus('ray1', '--workers', '2'))
    run('ray2', corpus('ray2', '--workers', '2'),
        kill=lambda p: subprocess.run(['pkill', '-9', '-f', f'raylet.*node_manager_port={WORKER_PORT}']))
    run('ray3', corpus('ray3'), kill=lambda p: os.killpg(p.pid, signal.SIGKILL))
    run('ray3+rerun', corpus('ray3'))
finally:
    subprocess.run([str(BIN/'ray'), 'stop', '--force'], env=env, capture_output=True, timeout=120)
    print(json.dumps(report))
