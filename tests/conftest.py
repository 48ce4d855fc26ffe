import contextlib, os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

@pytest.fixture(scope='session')
def tiny_ferplus(tmp_path_factory):
    "A synthetic FERPlus tree (train/valid/test) with learnable classes."
    from fer_nb.synthetic import make_tiny_ferplus
    return make_tiny_ferplus(tmp_path_factory.mktemp('tiny_ferplus'), n=192)

@pytest.fixture(scope='session')
def untrained(tmp_path_factory):
    "A checkpoint of an untrained ResNet-FER: enough for every mechanic but the labels, and fast to classify."
    import torch
    from fer_nb.model import create_model, save_checkpoint
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp('ck')/'untrained.pt', create_model('resnet_fer'))

@pytest.fixture
def env(tmp_path):
    "Environment for subprocesses: caches in tmp, papermill mode on."
    e = dict(os.environ, FER_NB_CACHE=str(tmp_path/'cache'), FER_NB_PAPERMILL='1', PYTHONWARNINGS='ignore')
    e.pop('IN_TEST', None)
    return e

def real_checkpoint():
    "$FER_NB_CHECKPOINT, else the shipped model; None when neither exists (tests of labels skip then)."
    from fer_nb.model import CheckpointError, shipped_model_path
    env = os.environ.get('FER_NB_CHECKPOINT')
    if env: return Path(env) if Path(env).is_file() else None
    try: p = shipped_model_path()
    except CheckpointError: return None
    return p if p.is_file() else None

def find_chromium():
    "Debian's chromium (or $CHROMIUM), never a downloaded browser."
    import shutil
    for c in (os.environ.get('CHROMIUM'), shutil.which('chromium'), '/usr/bin/chromium', shutil.which('chromium-browser')):
        if c and Path(c).is_file(): return c
    return None

def free_port()->int:
    import socket
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@contextlib.contextmanager
def chromium(args:list):
    "Headless Chromium (playwright driving Debian's browser) with these flags; the test skips, saying why, where it cannot run."
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    exe = find_chromium()
    if exe is None: pytest.skip('Chromium not found (apt-get install chromium, or set $CHROMIUM)')
    pw = sync_api.sync_playwright().start()
    try: b = pw.chromium.launch(executable_path=exe, args=args, headless=True)
    except Exception as e:
        pw.stop(); pytest.skip(f'Chromium at {exe} could not be launched: {str(e).splitlines()[0]}')
    try: yield b
    finally: b.close(); pw.stop()

@contextlib.contextmanager
def serving(cmd:list, cwd, log_path, ready, name:str='voila', timeout:float=120):
    "Run a server command in its own process group until `ready()` is true; stop the whole group afterwards."
    import signal, subprocess, time
    log = open(log_path, 'w')
    p = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + timeout
        while not ready():
            if p.poll() is not None or time.time() > deadline:
                raise RuntimeError(f"{name} did not start:\n{Path(log_path).read_text()[-3000:]}")
            time.sleep(0.1)
        yield p
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        log.close()

def throwaway_certificate(folder)->tuple:
    "(certificate, key): a self-signed certificate for localhost and 127.0.0.1, valid one day, made with openssl; the test skips without it."
    import shutil, subprocess
    if shutil.which('openssl') is None: pytest.skip('openssl not found: no certificate for the https test')
    cert, key = Path(folder)/'cert.pem', Path(folder)/'key.pem'
    subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost',
                    '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1', '-keyout', str(key), '-out', str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key
