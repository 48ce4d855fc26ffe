"`fer-nb serve` as a client sees it: a real server (model process + Voila) on a free port, asked over HTTP."
import io, json, os, re, signal, socket, subprocess, sys, threading, time, urllib.error, urllib.request
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
    from fer_nb.client import RemotePredictor
    pid = health(url)['pid']
    os.kill(pid, signal.SIGKILL); t = time.perf_counter()
    faces = RemotePredictor(url, retry_s=120).predict(ASTRONAUT)
    took = time.perf_counter() - t
    assert faces[0].label == 'happiness' and health(url)['pid'] != pid
    print(f'model process restarted: next answer {took:.1f} s after the kill')

# ---- the light page, /room, /qr, /notebook/ and https, as an HTTP client sees them

OUTSIDE = re.compile(r'(?:https?:)?//(?!localhost[:/]|127\.0\.0\.1[:/])[\w.-]+\.[a-z]{2,}', re.I)   # an address off this server

def get(url:str, context=None)->tuple:
    "(status, body text, headers) of a GET."
    try:
        with urllib.request.urlopen(url, timeout=60, context=context) as r: return r.status, r.read().decode(), r.headers
    except urllib.error.HTTPError as e: return e.code, e.read().decode(), e.headers

def test_static_files_name_no_outside_address():
    "The page's files, as shipped, load nothing from elsewhere: no URL of another host in any of them."
    files = sorted((ROOT/'fer_nb'/'static').glob('*'))
    assert {p.suffix for p in files} >= {'.html', '.css', '.js'}
    for p in files: assert not OUTSIDE.search(p.read_text()), (p.name, OUTSIDE.search(p.read_text()).group())

def test_light_page_is_served_with_its_files(server):
    "/ is the light page: its policy allows only this server, and every file it names is served."
    url = server[0]
    status, page, headers = get(url)
    assert status == 200 and headers['Content-Type'].startswith('text/html') and '<input id="photo" class="file" type="file"' in page
    assert "default-src 'self'" in headers['Content-Security-Policy'] and headers['X-Content-Type-Options'] == 'nosniff'
    for ref in re.findall(r'(?:src|href)="(static/[^"]+)"', page):
        status, body, headers = get(url + ref)
        assert status == 200 and body and headers['Cache-Control'] == 'no-cache', ref
    status, body, _ = get(url + 'static/../serve.py')
    assert status in (403, 404) and 'import' not in body       # nothing outside fer_nb/static/

def test_room_counts_photos_not_second_looks(server):
    "/v1/room counts each labelled photo once: not a second look (count=0), not a file that is no photo."
    url = server[0]
    room = lambda: json.loads(get(url + 'v1/room')[1])
    before = room()
    assert before['window_s'] == 300 and set(before) == {'window_s', 'photos', 'faces', 'counts'}
    assert post(url, ASTRONAUT.read_bytes())[0] == 200
    assert post(url, ASTRONAUT.read_bytes(), '?count=0&prior=train')[0] == 200
    assert post(url, b'%PDF-1.4 not a photo')[0] == 400
    after = room()
    assert (after['photos'], after['faces']) == (before['photos'] + 1, before['faces'] + 1), (before, after)
    assert after['counts']['happiness'] == before['counts'].get('happiness', 0) + 1
    status, page, _ = get(url + 'room')
    assert status == 200 and 'keeps no photo and no face' in page

def test_qr_page_shows_the_url_it_was_opened_at(server):
    url = server[0]
    status, page, headers = get(url + 'qr')
    assert status == 200 and '<svg' in page and f'<p class="qr-url">{url}</p>' in page and "default-src 'self'" in headers['Content-Security-Policy']
    # the test server listens on this machine only: the page says a phone cannot open that address, and the fix
    assert 'a phone cannot open this address' in page and 'fer-nb serve --host 0.0.0.0' in page, page

def test_notebook_app_moved_to_notebook(server):
    "The Voila app answers at /notebook/ (and /notebook sends there); Voila's own files come from under it."
    url = server[0]
    status, page, _ = get(url + 'notebook/')
    assert status == 200 and 'What does this face say?' in page and 'application/vnd.jupyter.widget-view+json' in page
    assert '/notebook/voila/static/' in page
    req = urllib.request.Request(url + 'notebook')
    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *a, **kw): return None
    try: urllib.request.build_opener(NoRedirect).open(req, timeout=10); code, where = 200, None
    except urllib.error.HTTPError as e: code, where = e.code, e.headers['Location']
    assert (code, where) == (301, '/notebook/')

@pytest.fixture(scope='module')
def https_server(tmp_path_factory):
    "`fer-nb serve` over https with a throwaway self-signed certificate, /room off, no notebook kernels; (URL, SSL context that trusts it, log)."
    import ssl
    from conftest import throwaway_certificate
    folder = tmp_path_factory.mktemp('https'); cert, key = throwaway_certificate(folder)
    context = ssl.create_default_context(cafile=str(cert))
    port = free_port(); url = f'https://127.0.0.1:{port}/'; log = folder/'serve.log'
    def answers():
        try:
            with urllib.request.urlopen(url + 'v1/health', timeout=2, context=context) as r: return r.status == 200
        except OSError: return False
    cmd = [sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(port), '--certfile', str(cert), '--keyfile', str(key), '--no-room', '--pool', '0']
    with serving(cmd, ROOT, log, answers, name='fer-nb serve --certfile', timeout=180):
        yield url, context, log

def test_https_with_a_throwaway_certificate(https_server):
    "The page and the API answer over https (the certificate checked, not ignored); /room is off and says so in one line."
    url, context, log = https_server
    status, page, _ = get(url, context)
    assert status == 200 and 'type="file"' in page
    req = urllib.request.Request(url + 'v1/predict', data=ASTRONAUT.read_bytes(), method='POST')
    with urllib.request.urlopen(req, timeout=60, context=context) as r: assert json.loads(r.read())['faces'][0]['label'] == 'happiness'
    status, page, _ = get(url + 'room', context)
    assert status == 404 and 'The room view is off' in page and '--no-room' in page
    status, body, _ = get(url + 'v1/room', context)
    assert status == 404 and json.loads(body)['error'] == 'the room view is off (`fer-nb serve --no-room`)'
    assert f'open https://localhost:{url.rsplit(":", 1)[1]}' in log.read_text(), log.read_text()[-2000:]

def test_serve_refuses_a_bad_certificate_in_one_line(tmp_path):
    (tmp_path/'cert.pem').write_text('not a certificate')
    r = subprocess.run([sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(free_port()), '--certfile', str(tmp_path/'cert.pem')],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.strip().startswith('fer-nb: error: ') and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert 'cannot serve https' in r.stderr
