"`fer-nb predict` over many photos: folders, globs and files mixed; CSV and JSON out; unreadable files listed, not lost."
import json, subprocess, sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from fer_nb.data import CLASSES, DataError
from fer_nb.apps import Predictor, expand_inputs, predict_many
from fer_nb.synthetic import make_photo_folder

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)

@pytest.fixture(scope='module')
def shots(tmp_path_factory):
    "happy/ and neutral/ with 2 face photos and 1 faceless photo each, a corrupt JPEG, an empty PNG and a text file."
    root = make_photo_folder(tmp_path_factory.mktemp('batch')/'shots', per_class=2, no_face=1)
    (root/'neutral'/'corrupt.jpg').write_bytes(b'\xff\xd8\xff not a jpeg')
    (root/'happy'/'empty.png').write_bytes(b'')
    (root/'README.txt').write_text('not a photo')
    return root

def cli(*args, cwd=ROOT, timeout=300):
    return subprocess.run([sys.executable, '-m', 'fer_nb.cli', *map(str, args)], capture_output=True, text=True, cwd=cwd, timeout=timeout)

FACES = {'happy/face0.jpg', 'happy/face1.jpg', 'neutral/face0.jpg', 'neutral/face1.jpg'}
NOFACE = {'happy/noface0.jpg', 'neutral/noface0.jpg'}
BAD = {'happy/empty.png': 'empty file', 'neutral/corrupt.jpg': 'not an image'}

def rel(f, root): return str(Path(f).relative_to(root))

def check_rows(t, root, extra_missing=None):
    "Every photo is in the table: one row per face, one per faceless photo, one per unreadable file."
    t = t.assign(name=t.file.map(lambda f: rel(f, root) if Path(f).is_relative_to(root) else f))
    assert set(t.name) == FACES | NOFACE | set(BAD) | ({extra_missing} if extra_missing else set())
    ok = t[t.status == 'ok']
    assert set(ok.name) == FACES and len(ok) == 4 and (ok.face == 1).all()
    assert ((ok.w > 20) & (ok.h > 20)).all() and ok.label.isin(CLASSES).all()
    assert (ok[list(CLASSES)].sum(axis=1) - 1).abs().max() < 1e-3 and ((ok.confidence - ok[list(CLASSES)].max(axis=1)).abs() < 1e-3).all()
    nf = t[t.status == 'no face']
    assert set(nf.name) == NOFACE and nf.label.fillna('').eq('').all() and nf.face.isna().all()
    for name, msg in BAD.items():
        (s,) = t[t.name == name].status
        assert msg in s and '\n' not in s, s
    return t

def test_expand_inputs(shots, tmp_path):
    photos = expand_inputs([shots])
    assert {rel(p, shots) for p in photos} == FACES | NOFACE | set(BAD)          # README.txt skipped
    mixed = expand_inputs([shots/'neutral'/'face1.jpg', f'{shots}/*/face*.jpg', shots/'happy'])
    assert mixed[0] == shots/'neutral'/'face1.jpg' and len(mixed) == len(set(mixed)) == 4 + 2   # happy/'s noface0 and empty.png are new
    with pytest.raises(DataError, match='no photos there'): expand_inputs([f'{shots}/*.webp'])
    (tmp_path/'empty').mkdir()
    with pytest.raises(DataError, match='no photos there'): expand_inputs([tmp_path/'empty'])

def test_predict_many_api(shots, untrained):
    t = predict_many([shots], Predictor.load(untrained), progress=False)
    check_rows(t, shots)
    assert t.attrs['summary'].startswith('8 photos, 4 faces, 2 unreadable') and 'photos/s' in t.attrs['summary']

def test_cli_csv_and_json(shots, untrained, tmp_path):
    r = cli('predict', shots, shots/'missing.png', '--checkpoint', untrained, '--csv', tmp_path/'out.csv', '--json', tmp_path/'out.json')
    assert r.returncode == 0, r.stderr
    assert r.stdout == '' and 'Traceback' not in r.stderr
    summary = r.stderr.strip().splitlines()[-1].split('\r')[-1].strip()
    assert summary.startswith('9 photos, 4 faces, 3 unreadable, ') and 'photos/s' in summary, r.stderr
    assert 'photo/s' in r.stderr                                                 # the progress bar
    t = check_rows(pd.read_csv(tmp_path/'out.csv'), shots, extra_missing='missing.png')
    assert t.set_index('name').status['missing.png'] == 'file not found'
    assert list(t.columns[:8]) == ['file', 'face', 'x', 'y', 'w', 'h', 'label', 'confidence'] and list(t.columns[8:15]) == list(CLASSES)
    js = json.loads((tmp_path/'out.json').read_text())
    assert len(js) == 9
    by = {rel(d['image'], shots) if Path(d['image']).is_relative_to(shots) else d['image']: d for d in js}
    assert all(len(by[n]['faces']) == 1 and 'error' not in by[n] for n in FACES)
    assert all(by[n]['faces'] == [] and 'error' not in by[n] for n in NOFACE)
    assert all(msg in by[n]['error'] for n, msg in BAD.items())
    assert by['missing.png']['error'] == 'file not found'
    assert {k: by['happy/face0.jpg']['faces'][0]['probs'][k] for k in CLASSES} == \
           pytest.approx(t[t.name == 'happy/face0.jpg'][list(CLASSES)].iloc[0].to_dict(), abs=1e-4)   # the same numbers in both

def test_cli_glob_json_stdout_and_annotate(shots, untrained, tmp_path):
    r = cli('predict', f'{shots}/*/face*.jpg', '--checkpoint', untrained, '--json', '--annotate', tmp_path/'pics')
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)
    assert {rel(d['image'], shots) for d in js} == FACES
    assert {str(p.relative_to(tmp_path/'pics')) for p in (tmp_path/'pics').rglob('*.png')} == {n.replace('.jpg', '.png') for n in FACES}

def test_cli_table_lists_unreadable(shots, untrained):
    r = cli('predict', shots/'happy', '--checkpoint', untrained)
    assert r.returncode == 0, r.stderr
    assert 'empty.png: unreadable (empty file)' in r.stdout and 'noface0.jpg: no face found' in r.stdout
    assert r.stdout.count(': 1 face\n') == 2

def test_nothing_readable_is_exit_2(shots, untrained, tmp_path):
    r = cli('predict', shots/'happy'/'empty.png', shots/'neutral'/'corrupt.jpg', '--checkpoint', untrained, '--csv', tmp_path/'out.csv')
    assert r.returncode == 2
    last = r.stderr.strip().splitlines()[-1].split('\r')[-1]
    assert last.startswith('fer-nb: error: none of the 2 photos could be read') and 'Traceback' not in r.stderr
    st = pd.read_csv(tmp_path/'out.csv').status.tolist()                        # still listed
    assert len(st) == 2 and st[0] == 'empty file' and 'not an image' in st[1], st
    r = cli('predict', f'{shots}/*.gif', '--checkpoint', untrained)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"fer-nb: error: {shots}/*.gif: no photos there (.avif .bmp .gif .heic .heif .jpeg .jpg .png .tif .tiff .webp)"]
    r = cli('predict', '--json', shots/'happy'/'face0.jpg', shots/'happy'/'face1.jpg', '--checkpoint', untrained)
    assert r.returncode == 2 and 'put the photos before --json' in r.stderr

def test_twenty_photos_per_second(untrained, tmp_path):
    "The batch rate on 20 synthetic face photos (printed; a floor far below what 2 shared cores manage)."
    root = make_photo_folder(tmp_path/'twenty', per_class=10, classes=('a', 'b'), no_face=0)
    r = cli('predict', root, '--checkpoint', untrained, '--csv', tmp_path/'t.csv')
    assert r.returncode == 0, r.stderr
    summary = r.stderr.strip().splitlines()[-1].split('\r')[-1].strip()
    print(summary)
    assert summary.startswith('20 photos, 20 faces, 0 unreadable')
    assert float(summary.split(', ')[-1].split()[0].split('photos/s')[0]) > 2
