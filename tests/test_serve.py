"`fer-nb serve` as a client sees it: a real server (model process + Voila) on a free port, asked over HTTP."
import io, json, os, signal, socket, sys, threading, time, urllib.error, urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import free_port, real_checkpoint, serving

ROOT = Path(__file__).resolve().parents[1]
ASTRONAUT = ROOT/'samples'/'astronaut.png'
pytestmark = pytest.mark.skipif(real_checkpoint() is None, reason="no trained model: models/DEFAULT is missing and $FER_NB_CHECKPOINT is unset")

def health(url:str):
    try:
        with urllib.request.urlopen(url + 'v1/health', timeout=2) as r: return json.loads(r.read())
    except (OSError, ValueError): return None

def post(url:str, body:bytes, query:str='', headers:dict|None=None, timeout:float=60)->tuple:
    "(status, JSON answer, headers) of POST /v1/predict."
    req = urllib.request.Request(url + 'v1/predict' + query, data=body, method='POST', headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r: return r.status, json.loads(r.read()), r.headers
    except urllib.error.HTTPError as e: return e.code, json.loads(e.read()), e.headers

def post_file(url:str, name:str, content:bytes)->tuple:
    "POST /v1/predict with the photo as form field `file`, as `curl -F file=@name` sends it."
    b = 'fer-nb-test-boundary'
    body = (f'--{b}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\nContent-Type: application/octet-stream\r\n\r\n'.encode()
            + content + f'\r\n--{b}--\r\n'.encode())
    return post(url, body, headers={'Content-Type': f'multipart/form-data; boundary={b}'})

@pytest.fixture(scope='module')
def server(tmp_path_factory):
    "`fer-nb serve` on a free port with one preheated kernel; yields (URL, the supervisor's Popen)."
    log = tmp_path_factory.mktemp('serve')/'serve.log'
    port = free_port(); url = f'http://127.0.0.1:{port}/'
    cmd = [sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(port), '--pool', '1']
    with serving(cmd, ROOT, log, lambda: health(url) is not None, name='fer-nb serve', timeout=180) as proc:
        yield url, proc

def test_api_answers_the_astronaut(server):
    url, _ = server
    h = health(url)
    assert h['status'] == 'ok' and h['model'] and 'happiness' in h['classes'], h
    status, raw, _ = post(url, ASTRONAUT.read_bytes())
    assert status == 200 and raw['faces'][0]['label'] == 'happiness', raw
    assert (raw['model'], raw['prior']) == (h['model'], 'uniform')
    assert sorted(raw['faces'][0]) == ['box', 'confidence', 'label', 'probs', 'score'] and len(raw['faces'][0]['box']) == 4
    status, form, _ = post_file(url, 'astronaut.png', ASTRONAUT.read_bytes())
    assert status == 200 and form['faces'] == raw['faces'], form
    status, train, _ = post(url, ASTRONAUT.read_bytes(), '?prior=train')
    assert status == 200 and train['prior'] == 'train' and train['faces'][0]['label'] == 'happiness'
    # A model can be sure enough of the astronaut that 4-decimal probabilities hide the prior; a plain gray face
    # (a small image is taken whole as one face) is an unsure one. FERPlus's most frequent class, neutral, must gain.
    import io
    from PIL import Image
    buf = io.BytesIO(); Image.new('L', (48, 48), 128).save(buf, 'PNG'); gray = buf.getvalue()
    (s1, uniform_gray, _), (s2, train_gray, _) = post(url, gray), post(url, gray, '?prior=train')
    assert (s1, s2) == (200, 200) and len(uniform_gray['faces']) == len(train_gray['faces']) == 1, (uniform_gray, train_gray)
    assert train_gray['faces'][0]['probs']['neutral'] > uniform_gray['faces'][0]['probs']['neutral'], (uniform_gray, train_gray)

def test_bad_uploads_get_json_errors_and_the_next_good_one_works(server, tmp_path, monkeypatch):
    url, _ = server
    from fer_nb.cli import run_cli
    broken = ASTRONAUT.read_bytes()[:5000]
    (tmp_path/'broken.png').write_bytes(broken); monkeypatch.chdir(tmp_path)
    code, _, err = run_cli('predict', 'broken.png')
    status, body, _ = post_file(url, 'broken.png', broken)
    assert code == 2 and status == 400, (code, status, body)
    assert err.strip() == f"fer-nb: error: {body['error']}", (err, body)          # the CLI's line, word for word
    for data, want in [(b'', 'upload: empty file'), (b'%PDF-1.4 not a photo', 'upload: not an image')]:
        status, body, _ = post(url, data)
        assert status == 400 and body['error'].startswith(want), body
    status, body, _ = post(url, b'x', '?prior=flat')
    assert status == 400 and 'prior must be one of' in body['error'], body
    status, body, _ = post(url, b'\0'*(51*2**20))
    assert status == 413 and 'the limit is 50 MB' in body['error'], body
    assert 'Traceback' not in json.dumps(body)
    status, body, _ = post(url, ASTRONAUT.read_bytes())
    assert status == 200 and body['faces'][0]['label'] == 'happiness'

def test_heic_photo_reads(server):
    pillow_heif = pytest.importorskip('pillow_heif')
    from PIL import Image
    pillow_heif.register_heif_opener()
    buf = io.BytesIO(); Image.open(ASTRONAUT).convert('RGB').save(buf, format='HEIF', quality=90)
    status, body, _ = post_file(server[0], 'astronaut.heic', buf.getvalue())
    assert status == 200 and body['faces'][0]['label'] == 'happiness', body

def test_eight_concurrent_clients_all_succeed(server):
    url, photo = server[0], ASTRONAUT.read_bytes()
    with ThreadPoolExecutor(8) as pool: answers = list(pool.map(lambda _: post(url, photo), range(8)))
    assert [s for s, _, _ in answers] == [200]*8, [(s, b) for s, b, _ in answers]
    assert all(b['faces'][0]['label'] == 'happiness' for _, b, _ in answers)

def test_a_slow_upload_does_not_stall_others(server):
    "A client trickling a big body keeps its connection open; another client's photo is answered meanwhile."
    url = server[0]; host, port = url.split('//')[1].strip('/').split(':')
    slow = socket.create_connection((host, int(port)))
    try:
        slow.sendall(f'POST /v1/predict HTTP/1.1\r\nHost: {host}\r\nContent-Length: {10*2**20}\r\n\r\n'.encode() + b'\xff\xd8' + b'\0'*50_000)
        t = time.perf_counter(); status, body, _ = post(url, ASTRONAUT.read_bytes(), timeout=30)
        assert status == 200 and body['faces'][0]['label'] == 'happiness'
        print(f'answered in {time.perf_counter() - t:.2f} s while another upload was stalled')
    finally: slow.close()

def test_a_huge_photo_does_not_stall_others(server, tmp_path):
    "A 24 MP PNG (decoded in full: PNG has no reduced decoding) is still in work when a small photo's answer comes back."
    import numpy as np
    from PIL import Image
    noise = np.random.default_rng(0).integers(60, 200, (250, 375, 3), dtype=np.uint8)   # texture: slow to inflate, unlike a flat colour
    big = Image.fromarray(noise).resize((6000, 4000), Image.BILINEAR); big.paste(Image.open(ASTRONAUT).convert('RGB').resize((2000, 2000)), (2000, 1000))
    big.save(tmp_path/'big.png', compress_level=1); body = (tmp_path/'big.png').read_bytes()
    url, done = server[0], {}
    def post_big(): post(url, body); done['big'] = time.perf_counter()
    worker = threading.Thread(target=post_big); worker.start()
    time.sleep(0.3)          # the big body is in and its decoding under way
    status, small, _ = post(url, ASTRONAUT.read_bytes()); done['small'] = time.perf_counter()
    worker.join(120)
    assert status == 200 and small['faces'][0]['label'] == 'happiness'
    assert done['small'] < done['big'], 'the small photo waited for the huge one'

def _tree(pid:int)->list:
    psutil = pytest.importorskip('psutil')
    return psutil.Process(pid).children(recursive=True)

def test_page_kernels_hold_no_model(server):
    "The preheated page kernel has run the app notebook without loading torch; the model process has it."
    url, proc = server
    deadline = time.time() + 60
    while time.time() < deadline:
        kernels = [p for p in _tree(proc.pid) if 'ipykernel' in ' '.join(p.cmdline())]
        if kernels: break
        time.sleep(0.5)
    assert kernels, 'no page kernel started'
    time.sleep(3)   # the pool kernel runs the page's cells
    maps = lambda p: Path(f'/proc/{p.pid}/maps').read_text()
    model, = [p for p in _tree(proc.pid) if ' model ' in ' '.join(p.cmdline()) + ' ']
    assert 'libtorch' in maps(model)
    for k in kernels: assert 'libtorch' not in maps(k) and 'onnxruntime' not in maps(k), k.cmdline()

def test_killed_model_process_is_restarted(server):
    "Kill the model process: the supervisor starts another and the next request succeeds (time printed)."
    url, _ = server
    from fer_nb.serve import RemotePredictor
    pid = health(url)['pid']
    os.kill(pid, signal.SIGKILL); t = time.perf_counter()
    faces = RemotePredictor(url, retry_s=120).predict(ASTRONAUT)
    took = time.perf_counter() - t
    assert faces[0].label == 'happiness' and health(url)['pid'] != pid
    print(f'model process restarted: next answer {took:.1f} s after the kill')
