"The demo end to end: Predictor API, `fer-nb predict|video` in subprocesses, the widget callback."
import json, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from fer_nb.data import CLASSES, DataError, ferplus_dir
from fer_nb.predict import Face, Predictor, sample_path
from fer_nb.apps import classify_uploads, make_demo_widget
from fer_nb.notebook_app import voila_command
from fer_nb.model import predict_logits
from fer_nb.synthetic import png_bytes, upload, write_clip
from conftest import real_checkpoint

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)   # tiny batches; the test machine's cores are shared with other jobs

needs_model = pytest.mark.skipif(real_checkpoint() is None, reason="no trained model: models/DEFAULT is missing and $FER_NB_CHECKPOINT is unset")

def cli(*args, timeout=300):
    "Run `python -m fer_nb.cli ARGS` in a subprocess."
    return subprocess.run([sys.executable, '-m', 'fer_nb.cli', *map(str, args)], capture_output=True, text=True, cwd=ROOT, timeout=timeout)


# ---------------------------------------------------------------- real photo, real model
@needs_model
def test_astronaut_is_happy():
    faces = Predictor.load().predict(sample_path())
    assert len(faces) == 1
    f = faces[0]
    assert f.label == 'happiness' and f.confidence > 0.5, f
    assert abs(sum(f.probs.values()) - 1) < 1e-4 and list(f.probs) == list(CLASSES)
    x, y, w, h = f.box
    assert 150 < x + w/2 < 300 and 60 < y + h/2 < 180       # her face

@needs_model
def test_cli_predict_json_and_annotate(tmp_path):
    r = cli('predict', sample_path(), '--json', '--annotate', tmp_path/'out.png')
    assert r.returncode == 0, r.stderr
    res = json.loads(r.stdout)
    assert len(res) == 1 and res[0]['image'].endswith('astronaut.png')
    (face,) = res[0]['faces']
    assert face['label'] == 'happiness' and set(face) >= {'box', 'label', 'probs'} and len(face['box']) == 4
    assert Image.open(tmp_path/'out.png').size == (512, 512)

@needs_model
def test_cli_predict_table():
    r = cli('predict', sample_path())
    assert r.returncode == 0, r.stderr
    assert 'astronaut.png: 1 face' in r.stdout and 'happiness' in r.stdout

# ---------------------------------------------------------------- no face, many faces
def test_no_face(untrained, tmp_path):
    p = Predictor.load(untrained)
    blank = np.full((480, 640, 3), 127, np.uint8); blank[100:300, 200:400] = (30, 90, 200)
    assert p.predict(blank) == []
    Image.fromarray(blank).save(tmp_path/'blank.png')
    r = cli('predict', tmp_path/'blank.png', '--checkpoint', untrained)
    assert r.returncode == 0, r.stderr
    assert 'no face found' in r.stdout
    r = cli('predict', tmp_path/'blank.png', '--checkpoint', untrained, '--json')
    assert json.loads(r.stdout) == [{'image': str(tmp_path/'blank.png'), 'faces': []}]

def test_faces_left_to_right_in_one_batch(untrained, monkeypatch):
    p = Predictor.load(untrained)
    a = Image.open(sample_path()).convert('RGB')
    pair = Image.new('RGB', (1024, 512)); pair.paste(a, (0, 0)); pair.paste(a.transpose(Image.FLIP_LEFT_RIGHT), (512, 0))
    calls = []
    orig = p.classify
    monkeypatch.setattr(p, 'classify', lambda crops: calls.append(len(crops)) or orig(crops))
    faces = p.predict(pair)
    assert len(faces) == 2 and faces[0].box[0] < 512 <= faces[1].box[0]
    assert calls == [2]                                   # one model call for both faces
    assert all(isinstance(f, Face) and json.dumps(f.to_dict()) for f in faces)

def test_big_photo_is_shrunk_before_detection(untrained):
    p = Predictor.load(untrained)
    big = Image.open(sample_path()).convert('RGB').resize((4096, 4096))
    seen = []
    det = p.detector
    p.detector = lambda rgb: seen.append(rgb.shape) or det(rgb)
    faces = p.predict(big)
    assert seen == [(512, 512, 3)]                              # DETECT_SIDE
    assert len(faces) == 1 and 8*150 < faces[0].box[0] + faces[0].box[2]/2 < 8*300   # box in the big photo's pixels

# ---------------------------------------------------------------- face crops need no detector
@pytest.mark.skipif(not (ferplus_dir()/'FER2013Test').is_dir(), reason="FERPlus not found (set FERPLUS_DIR)")
def test_fer_image_classifies_as_itself(untrained):
    path = sorted((ferplus_dir()/'FER2013Test').glob('*.png'))[0]
    img = np.asarray(Image.open(path).convert('L'))
    for pred in (Predictor.load(untrained, detector='none'), Predictor.load(untrained)):
        ref = predict_logits(pred.model, torch.from_numpy(img.copy())[None, None]).softmax(1)[0].numpy()
        (f,) = pred.predict(path, detect='never')
        assert f.box == (0, 0, 48, 48)
        np.testing.assert_allclose(list(f.probs.values()), ref, atol=1e-6)

# ---------------------------------------------------------------- bad input: one line, exit code 2
BAD = {  # kind: (file name, how to make it, expected message)
    'empty': ('empty.png', lambda p: p.write_bytes(b''), 'empty file'),
    'truncated': ('truncated.png', lambda p: p.write_bytes(sample_path().read_bytes()[:2000]), 'truncated'),
    'non-image': ('text.png', lambda p: p.write_bytes(b'just some text, not a picture'), 'not an image'),
    'bomb': ('bomb.png', lambda p: p.write_bytes(png_bytes(Image.new('1', (10000, 10000)))), 'decompression bomb'),
    'missing': ('missing.png', lambda p: None, 'file not found'),
    'directory': ('folder', lambda p: p.mkdir(), 'is a directory'),
}

def bad_input(kind, tmp_path):
    "Make the bad file of this kind; (path, expected message)."
    name, make, msg = BAD[kind]
    make(tmp_path/name)
    return tmp_path/name, msg

KINDS = list(BAD)

@pytest.mark.parametrize('kind', KINDS)
def test_bad_input_api(kind, untrained, tmp_path):
    path, msg = bad_input(kind, tmp_path)
    with pytest.raises(DataError, match=msg) as e: Predictor.load(untrained).predict(path)
    assert '\n' not in str(e.value)

@pytest.mark.parametrize('kind', KINDS)
def test_bad_input_cli(kind, untrained, tmp_path):
    path, msg = bad_input(kind, tmp_path)
    if kind == 'directory': msg = 'no photos there'     # the CLI takes folders of photos: an empty one holds none
    r = cli('predict', path, '--checkpoint', untrained)
    assert r.returncode == 2, (r.returncode, r.stdout, r.stderr)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('fer-nb: error:') and msg in lines[0], r.stderr
    assert 'Traceback' not in r.stderr and r.stdout == ''

def test_tiny_image_has_no_face(untrained, tmp_path):
    p = Predictor.load(untrained)
    assert p.predict(np.zeros((1, 1, 3), np.uint8)) == []
    with pytest.raises(DataError, match='too small to hold a face') as e: p.predict(np.zeros((1, 1, 3), np.uint8), detect='never')
    assert '\n' not in str(e.value)
    Image.new('RGB', (1, 1)).save(tmp_path/'dot.png')
    r = cli('predict', tmp_path/'dot.png', '--checkpoint', untrained)
    assert r.returncode == 0 and 'no face found' in r.stdout, (r.stdout, r.stderr)

def test_bad_checkpoint_and_detector(tmp_path):
    r = cli('predict', sample_path(), '--checkpoint', tmp_path/'nope.pt')
    assert r.returncode == 2 and 'checkpoint not found' in r.stderr and len(r.stderr.strip().splitlines()) == 1
    r = cli('predict', sample_path(), '--detector', 'yolo')
    assert r.returncode == 2 and 'invalid choice' in r.stderr    # argparse

# ---------------------------------------------------------------- the widget callback
def test_widget_callback(untrained, tmp_path):
    p = Predictor.load(untrained)
    good = sample_path().read_bytes()
    parts = classify_uploads((upload('astronaut.png', good), upload('blank.png', png_bytes(Image.new('RGB', (300, 200)))),
                              upload('empty.png', b''), upload('notes.txt', b'hello')), p)
    assert len(parts) == 4
    assert parts[0].count('class="fer-face"') == 1 and 'data:image/jpeg;base64,' in parts[0]
    assert 'no face found' in parts[1]
    assert 'empty.png: empty file' in parts[2] and 'notes.txt: not an image' in parts[3]
    assert not any('Traceback' in x for x in parts)
    w = make_demo_widget(p)
    up, out = w.upload, w.output
    assert up.accept == 'image/*' and up.multiple
    up.value = (upload('astronaut.png', good),)
    assert 'fer-label' in out.outputs[0]['data']['text/html'] and up.value == ()

def test_widget_explain(untrained):
    p = Predictor.load(untrained)
    (part,) = classify_uploads((upload('astronaut.png', sample_path().read_bytes()),), p, explain=True)
    assert part.count('class="fer-heatmap"') == 1 and part.count('class="fer-face"') == 1
    w = make_demo_widget(p)
    w.upload.value = (upload('astronaut.png', sample_path().read_bytes()),)
    assert 'fer-heatmap' not in w.output.outputs[0]['data']['text/html']
    w.explain.value = True                                    # re-shows the last upload with its heat map
    assert 'fer-heatmap' in w.output.outputs[0]['data']['text/html']

def test_cli_explain(untrained, tmp_path):
    r = cli('predict', sample_path(), '--checkpoint', untrained, '--explain', tmp_path/'heat.png', '--annotate', tmp_path/'boxes.png')
    assert r.returncode == 0, r.stderr
    heat, boxes = (np.asarray(Image.open(tmp_path/n).convert('RGB')).astype(int) for n in ('heat.png', 'boxes.png'))
    assert heat.shape == boxes.shape == (512, 512, 3)
    diff = np.abs(heat - boxes).sum(2) > 30                   # the heat map is painted into the face box only
    ys, xs = np.nonzero(diff)
    assert diff.sum() > 2000 and 150 < xs.mean() < 300 and 60 < ys.mean() < 200, (diff.sum(), xs.mean(), ys.mean())

@needs_model
def test_widget_says_happiness():
    parts = classify_uploads((upload('astronaut.png', sample_path().read_bytes()),), Predictor.load())
    assert '<span class="fer-label">happiness</span>' in parts[0]

# ---------------------------------------------------------------- video
def test_video_round_trip(untrained, tmp_path):
    import cv2, pandas as pd
    clip = write_clip(tmp_path/'in.mp4')
    r = cli('video', clip, '--out', tmp_path/'out.mp4', '--csv', tmp_path/'faces.csv', '--checkpoint', untrained)
    assert r.returncode == 0, r.stderr
    assert '8 frames' in r.stdout and 'frames/s' in r.stdout
    cap = cv2.VideoCapture(str(tmp_path/'out.mp4'))
    n = 0
    while cap.read()[0]: n += 1
    assert n == 8 and cap.get(cv2.CAP_PROP_FRAME_WIDTH) == 320
    t = pd.read_csv(tmp_path/'faces.csv')
    assert t.frame.tolist() == list(range(6))                   # one face in each of the first 6 frames
    assert list(t.columns[:10]) == ['frame', 'time_s', 'face', 'track', 'x', 'y', 'w', 'h', 'label', 'confidence'] and set(CLASSES) <= set(t.columns)
    assert t.track.nunique() == 1                               # one face moving across: one track
    r = cli('video', tmp_path/'missing.mp4', '--checkpoint', untrained)
    assert r.returncode == 2 and 'video file not found' in r.stderr

# ---------------------------------------------------------------- serve
def test_serve_command(monkeypatch):
    cmd = voila_command(8899)
    assert cmd[1:4] == ['-m', 'fer_nb.serve', 'web'] and cmd[4].endswith('nbs/app.ipynb') and Path(cmd[4]).is_file()   # Voila with the API in front
    assert '--port=8899' in cmd and '--no-browser' in cmd
    r = cli('serve', '--help')
    assert r.returncode == 0 and '--port' in r.stdout
    import fer_nb.notebook_app
    monkeypatch.setattr(fer_nb.notebook_app, 'find_file', lambda *parts: None)     # no app notebook: one line, no fallback
    with pytest.raises(DataError, match='nbs/app.ipynb not found') as e: voila_command()
    assert '\n' not in str(e.value)
