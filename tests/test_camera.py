"The live camera: `handle_frame` without a browser, then the widget in Voila in headless Chromium fed by a fake camera clip."
import socket, sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from fer_nb.camera import handle_frame, make_camera_widget
from fer_nb.data import CLASSES
from fer_nb.predict import Predictor
from fer_nb.model import create_model, save_checkpoint
from fer_nb.synthetic import jpeg_bytes, sample_frame
from conftest import chromium, free_port, real_checkpoint, serving

@pytest.fixture(scope='module')
def checkpoint(tmp_path_factory):
    "The shipped model when present (labels are meaningful), else an untrained one (labels are any class)."
    if real_checkpoint() is not None: return None
    path = tmp_path_factory.mktemp('ck')/'untrained.pt'
    save_checkpoint(path, create_model('resnet_fer')); return path

@pytest.fixture(scope='module')
def predictor(checkpoint): return Predictor.load(checkpoint)

def test_astronaut_frame_gives_one_labelled_face(predictor):
    r = handle_frame(predictor, jpeg_bytes(sample_frame(), 70))
    assert (r['width'], r['height']) == (640, 480)
    assert len(r['faces']) == 1 and r['faces'][0]['label'] in CLASSES
    x, y, w, h = r['faces'][0]['box']; assert 0 <= x < 640 and 0 <= y < 480 and w > 40
    if real_checkpoint() is not None: assert r['faces'][0]['label'] == 'happiness'

@pytest.mark.parametrize('bad', [b'garbage', b'', bytearray(8), None])
def test_garbage_gives_one_error_line(predictor, bad):
    r = handle_frame(predictor, bad if bad is not None else jpeg_bytes(sample_frame(), 70)[:300])
    assert set(r) == {'error', 'ms'} and r['error'] and '\n' not in r['error'], r

def test_widget_counts_frames(predictor):
    cam = make_camera_widget(predictor)
    sent = []; cam.send = lambda content, buffers=None: sent.append(content)
    cam._on_frame(cam, {'type': 'frame', 'view': 'a'}, [memoryview(jpeg_bytes(sample_frame().resize((320, 240)), 70))])
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
    p = write_y4m(tmp_path/'clip.y4m', sample_frame(), frames=3)
    header = p.read_bytes().split(b'\n', 1)[0]
    assert header == b'YUV4MPEG2 W640 H480 F10:1 Ip A1:1 C420jpeg'
    assert p.stat().st_size == len(header) + 1 + 3*(6 + 640*480*3//2)

CAMERA_NB = """{"cells": [{"cell_type": "code", "execution_count": null, "id": "c1", "metadata": {}, "outputs": [], "source": [
 "from fer_nb.camera import make_camera_widget\\n", "cam = make_camera_widget(checkpoint=%s)\\n", "cam"]}],
 "metadata": {"kernelspec": {"display_name": "python3", "language": "python", "name": "python3"}}, "nbformat": 4, "nbformat_minor": 5}"""

@pytest.fixture
def voila(tmp_path, checkpoint):
    "Voila serving a one-cell notebook that shows the camera widget; yields the notebook's URL."
    nb = tmp_path/'camera.ipynb'; nb.write_text(CAMERA_NB % repr(str(checkpoint) if checkpoint else None).replace("'", '\\"'))
    port = free_port()
    def listening():
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=2): return True
        except OSError: return False
    with serving([sys.executable, '-m', 'voila', str(nb), '--no-browser', f'--port={port}', '--Voila.ip=127.0.0.1'],
                 tmp_path, tmp_path/'voila.log', listening):
        yield f'http://127.0.0.1:{port}/'

@pytest.fixture
def camera_browser(tmp_path):
    "Headless Chromium whose camera is a clip of the astronaut (permission granted by the fake UI)."
    clip = write_y4m(tmp_path/'clip.y4m', sample_frame())
    with chromium(['--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', f'--use-file-for-fake-video-capture={clip}',
                   '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update']) as b:
        yield b

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
    if real_checkpoint() is not None: assert label == 'happiness', status
    assert 'updates/s' in status and 'no camera' not in status, status

def test_no_camera_says_so_in_one_line(voila, tmp_path):
    "Without a camera (no fake device here) the widget shows one line: 'no camera: ' and the browser's reason."
    with chromium(['--no-sandbox', '--disable-gpu', '--deny-permission-prompts']) as b:
        page = b.new_page(); page.set_default_timeout(180_000)
        page.goto(voila, wait_until='domcontentloaded')
        page.locator('button.fer-cam-start').click()
        status = page.locator('.fer-cam-status')
        page.wait_for_function("() => (document.querySelector('.fer-cam-status')||{}).textContent?.startsWith('no camera')", timeout=60_000)
        text = status.inner_text()
    print(text)
    assert text.startswith('no camera: ') and '\n' not in text
