"The demo notebook served by Voila (`fer-nb serve`), driven in headless Chromium: upload the astronaut, read the label."
import os, shutil, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

from fer_nb.demo import sample_path
from fer_nb.model import CheckpointError, shipped_model_path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
                 '--disable-background-networking', '--disable-component-update', '--disable-sync']

def find_chromium():
    "Debian's chromium (or $CHROMIUM), never a downloaded browser."
    for c in (os.environ.get('CHROMIUM'), shutil.which('chromium'), '/usr/bin/chromium', shutil.which('chromium-browser')):
        if c and Path(c).is_file(): return c
    return None

def have_model():
    if os.environ.get('FER_NB_CHECKPOINT'): return Path(os.environ['FER_NB_CHECKPOINT']).is_file()
    try: return shipped_model_path().is_file()
    except CheckpointError: return False

def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]

@pytest.fixture
def browser():
    sync_api = pytest.importorskip('playwright.sync_api', reason='playwright is not installed')
    exe = find_chromium()
    if exe is None: pytest.skip('Chromium not found (apt-get install chromium, or set $CHROMIUM)')
    pw = sync_api.sync_playwright().start()
    try: b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS, headless=True)
    except Exception as e:
        pw.stop(); pytest.skip(f'Chromium at {exe} could not be launched: {str(e).splitlines()[0]}')
    yield b
    b.close(); pw.stop()

@pytest.fixture
def server(tmp_path):
    "`fer-nb serve` on a free port (no browser opening); yields the URL."
    port = free_port()
    log = open(tmp_path/'voila.log', 'w')
    p = subprocess.Popen([sys.executable, '-m', 'fer_nb.cli', 'serve', '--port', str(port)], cwd=ROOT,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f'http://127.0.0.1:{port}/'
    try:
        deadline = time.time() + 120
        while True:
            try:
                with socket.create_connection(('127.0.0.1', port), timeout=2): break   # listening
            except OSError:
                if p.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"voila did not start:\n{(tmp_path/'voila.log').read_text()[-3000:]}")
                time.sleep(1)
        yield url
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        log.close()

@pytest.mark.skipif(not have_model(), reason="no trained model: models/DEFAULT is missing and $FER_NB_CHECKPOINT is unset")
def test_upload_astronaut_in_browser(browser, server, tmp_path):
    page = browser.new_page(viewport={'width': 1100, 'height': 900})
    page.set_default_timeout(300_000)       # Voila runs the whole notebook before the widget appears
    try:
        page.goto(server, wait_until='domcontentloaded')
        button = page.locator('button.widget-upload')      # ipywidgets 8 keeps its <input type=file> out of the DOM
        button.wait_for(state='visible')
        with page.expect_file_chooser() as chooser: button.click()
        chooser.value.set_files(str(sample_path()))
        label = page.locator('.fer-label').first
        label.wait_for(state='visible', timeout=120_000)
        text = label.inner_text()
        page.locator('.fer-result').first.scroll_into_view_if_needed()
        page.screenshot(path=str(tmp_path/'demo.png'))
        page.screenshot(path=str(tmp_path/'demo-full.png'), full_page=True)
        print('screenshot:', tmp_path/'demo.png')
    except Exception:
        page.screenshot(path=str(tmp_path/'failure.png'), full_page=True)
        print('voila log:', (tmp_path/'voila.log').read_text()[-3000:])
        raise
    assert text == 'happiness', text
    assert (tmp_path/'demo.png').stat().st_size > 10_000
