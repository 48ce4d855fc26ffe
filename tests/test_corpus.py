"""`fer-nb corpus` as a user runs it: bad inputs become rows, a killed or interrupted run resumes, and a real two-node Ray cluster
gives the same rows as one process, also when a node dies mid-run. The chapter nbs/12_corpus.ipynb tests the parts one by one."""
import json, os, shutil, signal, subprocess, sys, time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fer_nb.synthetic import make_photo_folder, write_crowd_clip

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
KEY = ['path', 'segment', 'frame', 'face']

@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
    "30 photos (24 with a face, 6 without) in class folders, and two 8-second crowd clips of 3 faces."
    root = tmp_path_factory.mktemp('corpus')
    make_photo_folder(root/'photos', per_class=8, classes=('a', 'b', 'c'), no_face=2)
    (root/'videos').mkdir()
    for k in (1, 2): write_crowd_clip(root/'videos'/f'crowd{k}.mp4', frames=80, faces=3, fps=10)
    return root

def fer_nb(*args, env=None, timeout=600):
    return subprocess.run([str(BIN/'fer-nb'), *map(str, args)], capture_output=True, text=True, timeout=timeout, env=env)

def corpus_cmd(corpus, out, ck, *extra):
    return [str(BIN/'fer-nb'), 'corpus', corpus, '--out', out, '--model', ck, '--fps', '5', '--segment', '2', *map(str, extra)]

def table(out)->pd.DataFrame:
    return pd.read_parquet(out).sort_values(KEY, na_position='first').reset_index(drop=True)

def assert_same_rows(a:pd.DataFrame, b:pd.DataFrame):
    "The same rows (paths, frames, boxes, labels, tracks…); probabilities within 1e-5, detector scores within 1e-4."
    probs = [c for c in a.columns if a[c].dtype.kind == 'f' and c not in ('time_s', 'score')]
    pd.testing.assert_frame_equal(a.drop(columns=probs + ['score', 'worker']), b.drop(columns=probs + ['score', 'worker']))
    np.testing.assert_allclose(a[probs].fillna(0).to_numpy(), b[probs].fillna(0).to_numpy(), atol=1e-5)
    np.testing.assert_allclose(a.score.fillna(0).to_numpy(), b.score.fillna(0).to_numpy(), atol=1e-4)

def assert_once(t:pd.DataFrame, reference:pd.DataFrame):
    "Every row of the reference exactly once: no work item lost, none written twice."
    assert not t.duplicated(KEY).any(), t[t.duplicated(KEY, keep=False)]
    assert_same_rows(t, reference)

@pytest.fixture(scope='module')
def reference(corpus, untrained, tmp_path_factory):
    "The local engine's table of the corpus, in one uninterrupted run."
    out = tmp_path_factory.mktemp('ref')/'out'
    r = subprocess.run(corpus_cmd(corpus, out, untrained), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith('32 files, 80 video frames, 264 faces, 0 errors'), last   # 24 photo faces; 2 clips × 40 frames × 3
    return table(out)

def test_local_table(reference, corpus):
    t = reference
    assert set(t.kind) == {'photo', 'video'} and t.path.nunique() == 32
    assert (t[t.kind == 'photo'].groupby('path').size() >= 1).all()
    assert set(t[t.kind == 'photo'].status) == {'ok', 'no face'}
    v = t[t.kind == 'video']
    assert sorted(v.segment.unique()) == [0, 1, 2, 3] and (v.frame % 2 == 0).all()      # 8 s cut every 2 s; 10 fps sampled at 5
    assert v.groupby(['path', 'segment']).track.nunique().eq(3).all()                    # 3 heads, 3 tracks per segment
    assert v.track.str.match(r'^\d+-\d+$').all() and (v.track.str.split('-').str[0].astype(int) == v.segment).all()
    assert set(t.prior) == {'uniform'} and t.checkpoint.str.len().eq(16).all()

def test_bad_inputs_are_rows(tmp_path, untrained, corpus):
    "Every bad input of the issue: a row with a one-line error, and the run goes on; an unwritable --out is a one-line error."
    bad = tmp_path/'bad'; bad.mkdir(); (tmp_path/'nomedia').mkdir(); (tmp_path/'nomedia'/'notes.md').write_text('no media')
    good = next((corpus/'photos'/'a').glob('face*.jpg'))
    (bad/'corrupt.jpg').write_bytes(good.read_bytes()[:300])
    (bad/'corrupt.mp4').write_bytes((corpus/'videos'/'crowd1.mp4').read_bytes()[:2000])
    (bad/'zero.mp4').write_bytes(b''); (bad/'zero.jpg').write_bytes(b'')
    (bad/'text.mp4').write_text('this is not a video')
    (tmp_path/'list.txt').write_text(f'{good}\nbad/gone.jpg\n')
    r = fer_nb('corpus', bad, tmp_path/'nomedia', tmp_path/'list.txt', '--out', tmp_path/'out', '--model', untrained)
    assert r.returncode == 0, r.stderr
    assert 'Traceback' not in r.stderr and '8 files, 0 video frames, 1 faces, 7 errors' in r.stderr, r.stderr
    t = pd.read_parquet(tmp_path/'out').assign(name=lambda d: d.path.map(lambda p: Path(p).name))
    status = dict(zip(t.name, t.status))
    assert status['corrupt.jpg'].startswith('corrupt or truncated image') and status['zero.jpg'] == 'empty file'
    assert status['corrupt.mp4'] == status['text.mp4'] == 'not a video OpenCV can read' and status['zero.mp4'] == 'empty file (0 bytes)'
    assert status['nomedia'] == 'no photos or videos in this folder' and status['gone.jpg'] == 'file not found'
    assert status[good.name] == 'ok' and all('\n' not in s for s in status.values())
    for args, msg in [(['--out', tmp_path/'list.txt'/'out'], 'cannot write the results there'), (['--out', tmp_path/'o2', '--fps', '0'], 'fps must be above 0'),
                      (['--out', tmp_path/'o3', '--engine', 'ray', '--cpus-per-worker', '0'], 'cpus per worker must be above 0')]:
        r = fer_nb('corpus', *args, bad, '--model', untrained)
        assert r.returncode == 2 and msg in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

def _stop_when_saved(p, out, sig):
    "Send `sig` to the run once it has written its first results (the middle of the run, as a user's Ctrl-C or a crash)."
    deadline = time.time() + 300
    while p.poll() is None and not list(Path(out).glob('part-*.parquet')) and time.time() < deadline: time.sleep(0.05)
    assert p.poll() is None, 'the run ended before it could be stopped'
    os.killpg(p.pid, sig)
    return p.communicate(timeout=120)

@pytest.mark.parametrize('sig', [signal.SIGKILL, signal.SIGINT], ids=['kill-9', 'ctrl-c'])
def test_local_resume(tmp_path, untrained, corpus, reference, sig):
    "Stopped mid-run, then run again: every work item exactly once, the same rows as an uninterrupted run."
    out = tmp_path/'out'
    # a shell without job control starts background commands with SIGINT ignored, and a Python started so never sees
    # Ctrl-C: give the run the terminal's default, as a user's foreground command has
    p = subprocess.Popen(corpus_cmd(corpus, out, untrained, '--save-every', '0'), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, start_new_session=True, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    _, err = _stop_when_saved(p, out, sig)
    done = table(out)
    assert 0 < done.path.nunique() < 32, done.path.nunique()
    if sig == signal.SIGINT:
        assert p.returncode == 130 and 'run the same command again to go on' in err and 'Traceback' not in err, err
    r = subprocess.run(corpus_cmd(corpus, out, untrained), capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    assert_once(table(out), reference)
    again = subprocess.run(corpus_cmd(corpus, out, untrained), capture_output=True, text=True, timeout=600)
    assert 'nothing to do: all 32 files' in again.stderr, again.stderr

def _namespaces_work()->str|None:
    "Why a cluster in a loopback-only network namespace cannot run here (None: it can)."
    if shutil.which('unshare') is None or shutil.which('ip') is None: return 'unshare or ip (util-linux, iproute2) not found'
    r = subprocess.run(['unshare', '-n', '-p', '-f', '--mount-proc', 'ip', 'link', 'set', 'lo', 'up'], capture_output=True, text=True)
    return None if r.returncode == 0 else f"cannot make a network namespace here ({r.stderr.strip()[:120]}): needs root or user namespaces"

def test_ray_cluster(tmp_path, untrained, corpus, reference):
    "Two Ray nodes (separate raylets, one CPU each) on loopback only: both do work; a node killed mid-run and a driver killed mid-run lose nothing."
    pytest.importorskip('ray', reason="Ray is not installed (pip install 'fer_nb[cluster]')")
    why = _namespaces_work()
    if why: pytest.skip(why)
    r = subprocess.run(['unshare', '-n', '-p', '-f', '--mount-proc', sys.executable, ROOT/'tests'/'ray_cluster.py', tmp_path, untrained, corpus],
                       capture_output=True, text=True, timeout=1200, env=dict(os.environ, FER_NB_CACHE=str(tmp_path/'cache')))
    rep = json.loads((r.stdout.strip().splitlines() or ['{}'])[-1])
    assert 'ray3+rerun' in rep, (rep, r.stderr[-3000:])
    for run in ('ray1', 'ray2', 'ray3+rerun'): assert rep[run]['rc'] == 0, (run, rep[run]['stderr'])
    assert rep['ray3']['rc'] == -signal.SIGKILL
    # both nodes did work: each row names the node its actor ran on (Ray's node id)
    ray1 = table(tmp_path/'ray1')
    assert set(ray1.worker) == set(rep['nodes']) and sorted(rep['nodes'].values()) == ['head', 'worker'], (set(ray1.worker), rep['nodes'])
    assert_same_rows(ray1, reference)
    # the worker node died mid-run: the run finished on the head node, every item once
    ray2 = table(tmp_path/'ray2')
    assert_once(ray2, reference)
    # the driver died mid-run: the rerun did the rest, every item once
    assert_once(table(tmp_path/'ray3'), reference)
    # every process the test started is gone: the namespace ended with its first process (Ray's name their --temp-dir)
    left = [subprocess.run(['pgrep', '-f', s], capture_output=True, text=True).stdout.split() for s in (rep['temp_dir'], str(tmp_path))]
    shutil.rmtree(rep['temp_dir'], ignore_errors=True)
    assert left == [[], []], left
