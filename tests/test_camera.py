"The live camera: `handle_frame` without a browser, then the widget in Voila in headless Chromium fed by a fake camera clip."
import os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_nb.camera import handle_frame, make_camera_widget
from fer_nb.data import CLASSES
from fer_nb.demo import Predictor, sample_path
from fer_nb.model import CheckpointError, create_model, save_checkpoint, shipped_model_path

def have_shipped():
    if os.environ.get('FER_NB_CHECKPOINT'): return Path(os.environ['FER_NB_CHECKPOINT']).is_file()
    try: return shipped_model_path().is_file()
    except CheckpointError: return False

def frame_640x480(fmt='JPEG')->Image.Image:
    "The astronaut on a 640×480 frame (her photo cropped to 4:3)."
    return Image.open(sample_path()).convert('RGB').crop((0, 64, 512, 448)).resize((640, 480), Image.BICUBIC)

def jpeg(im:Image.Image, quality=70)->bytes:
    import io
    b = io.BytesIO(); im.save(b, 'JPEG', quality=quality); return b.getvalue()

@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    "The shipped model when present (labels are meaningful), else an untrained one (labels are any class)."
    if have_shipped(): return None
    path = tmp_path_factory.mktemp('ck')/'untrained.pt'
    save_checkpoint(path, create_model('resnet_fer')); return path

@pytest.fixture(scope='module')
def predictor(checkpoint): return Predictor.load(checkpoint)

def test_astronaut_frame_gives_one_labelled_face(predictor):
    r = handle_frame(predictor, jpeg(frame_640x480()))
    assert (r['width'], r['height']) == (640, 480)
    assert len(r['faces']) == 1 and r['faces'][0]['label'] in CLASSES
    x, y, w, h = r['faces'][0]['box']; assert 0 <= x < 640 and 0 <= y < 480 and w > 40
    if have_shipped(): assert r['faces'][0]['label'] == 'happiness'

@pytest.mark.parametrize('bad', [b'garbage', b'', bytearray(8), None])
def test_garbage_gives_one_error_line(predictor, bad):
    r = handle_frame(predictor, bad if bad is not None else jpeg(frame_640x480())[:300])
    assert set(r) == {'error', 'ms'} and r['error'] and '\n' not in r['error'], r

def test_widget_counts_frames(predictor):
    cam = make_camera_widget(predictor)
    sent = []; cam.send = lambda content, buffers=None: sent.append(content)
    cam._on_frame(cam, {'type': 'frame', 'view': 'a'}, [memoryview(jpeg(frame_640x480().resize((320, 240))))])
    cam._on_frame(cam, {'type': 'other'}, [])
    assert cam.frames == 1 and cam.last_label in CLASSES and sent[0]['view'] == 'a' and len(sent) == 1

# ---- the widget in a real browser ---------------------------------------------------------------------------------

def write_y4m(path, im:Image.Image, frames:int=10)->Path:
    "A YUV4MPEG2 clip (C420jpeg, 640×480, 10 frames/s) of one picture, slightly moving, for Chromium's fake camera."
    import cv2
    rgb = np.asarray(im.convert('RGB'))
    with open(path, 'wb') as fh:
        fh.write(f"YUV4MPEG2 W{rgb.shape[1]} H{rgb.shape[0]} F10:1 Ip A1:1 C420jpeg\n".encode())
        for i in range(frames):
            shifted = np.roll(rgb, (i % 5) - 2, axis=1)     # a little movement, as a real camera has
            fh.write(b'FRAME\n'); fh.write(cv2.cvtColor(shifted, cv2.COLOR_RGB2YUV_I420).tobytes())   # Y plane, then U, then V
    return Path(path)

def test_y4m_layout(tmp_path):
    p = write_y4m(tmp_path/'clip.y4m', frame_640x480(), frames=3)
    header = p.read_bytes().split(b'\n', 1)[0]
    assert header == b'YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg'
    assert p.stat().st_size == len(header) + 1 + 3*(6 + 640*480*3//2)

def find_chromium():
    for c in (os.environ.get('CHROMIUM'), shutil.which('chromium'), '/usr/bin/chromium', shutil.which('chromium-browser')):
        if c and Path(c).is_file(): return c
    return None

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

CAMERA_NB = """{"cells": [{"cell_type": "code", "execution_count": null, "id": "c1", "metadata": {}, "outputs": [], "source": [
 "from fer_nb.camera import make_camera_widget\\n", "cam = make_camera_widget(checkpoint=%s)\\n", "cam"]}],
 "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}"""

@pytest.fixture
def voila(tmp_path, checkpoint):
    "Voila serving a one-cell notebook that shows the camera widget; yields the notebook's URL."
    nb = tmp_path/'camera.ipynb'; nb.write_text(CAMERA_NB % repr(str(checkpoint) if checkpoint else None).replace("'", '\\"'))
    port, log = free_port(), open(tmp_path/'voila.log', 'w')
    p = subprocess.Popen([sys.executable, '-m', 'voila', str(nb), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1'],
                         cwd=tmp_path, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.time() + 120
        while True:
            try:
                with socket.create_connection(('127.0.0.1', port), timeout=2): break
            except OSError:
                if p.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"voila did not start:\n{(tmp_path/'voila.log').read_text()[-3000:]}")
                time.sleep(1)
        yield f'http://127.0.0.1:{port}/'
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        log.close()

@pytest.fixture
def camera_browser(tmp_path):
    "Headless Chromium whose camera is a clip of the astronaut (permission granted by the fake UI)."
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    exe = find_chromium()
    if exe is None: pytest.skip('Chromium not found (apt-get install -y chromium, or set $CHROMIUM)')
    clip = write_y4m(tmp_path/'clip.y4m', frame_640x480())
    args = ['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', f'--use-file-for-fake-video-capture={clip}',
            '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update']
    pw = sync_api.sync_playwright().start()
    try: b = pw.chromium.launch(executable_path=exe, args=args, headless=True)
    except Exception as e:
        pw.stop(); pytest.skip(f'Chromium at {exe} could not be launched: {str(e).splitlines()[0]}')
    yield b
    b.close(); pw.stop()

def test_camera_widget_in_browser(camera_browser, voila, tmp_path):
    page = camera_browser.new_page(viewport={'width': 900, 'height': 800})
    page.set_default_timeout(180_000)
    console = []; page.on('console', lambda m: console.append(f'{m.type}: {m.text}'))
    try:
        page.goto(voila, wait_until='domcontentloaded')
        start = page.locator('button.fer-cam-start'); start.wait_for(state='visible')
        start.click()
        page.wait_for_function("() => { const r = document.querySelector('.fer-cam'); return r && +r.dataset.frames >= 5 }", timeout=120_000)
        label = page.locator('.fer-cam-label').inner_text()
        status = page.locator('.fer-cam-status').inner_text()
        frames = int(page.locator('.fer-cam').get_attribute('data-frames'))
        page.wait_for_timeout(3000)
        status = page.locator('.fer-cam-status').inner_text()
        page.screenshot(path=str(tmp_path/'camera.png'))
        print('status:', status, '· frames:', frames, '· screenshot:', tmp_path/'camera.png')
    except Exception:
        page.screenshot(path=str(tmp_path/'failure.png'), full_page=True)
        print('voila log:', (tmp_path/'voila.log').read_text()[-3000:]); print('\n'.join(console[-30:]))
        raise
    assert label in CLASSES, (label, status)
    if have_shipped(): assert label == 'happiness', status
    assert 'updates/s' in status and 'no camera' not in status, status

def test_no_camera_says_so_in_one_line(voila, tmp_path):
    "Without a camera (no fake device here) the widget shows one line: 'no camera: ' and the browser's reason."
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    exe = find_chromium()
    if exe is None: pytest.skip('Chromium not found (apt-get install -y chromium, or set $CHROMIUM)')
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=['--no-sandbox', '--disable-gpu', '--deny-permission-prompts'], headless=True)
        page = b.new_page(); page.set_default_timeout(180_000)
        page.goto(voila, wait_until='domcontentloaded')
        page.locator('button.fer-cam-start').click()
        status = page.locator('.fer-cam-status')
        page.wait_for_function("() => (document.querySelector('.fer-cam-status')||{}).textContent?.startsWith('no camera')", timeout=60_000)
        text = status.inner_text(); b.close()
    print(text)
    assert text.startswith('no camera: ') and '\n' not in text
