"`fer-nb eval` / `fer-nb export` in a subprocess, ONNX parity, and papermill running nbs/03_eval.ipynb on a tiny set."
import json, os, subprocess, sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fer_nb.model import create_model, save_checkpoint
from fer_nb.synthetic import make_folder_set, make_tiny_ferplus

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, '-m', 'fer_nb.cli']

@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    "A tiny FERPlus tree, a class-folder set (contempt, no neutral), a fer_nb checkpoint and broken ones."
    d = tmp_path_factory.mktemp('eval')
    make_tiny_ferplus(d/'ferplus', n=48)
    make_folder_set(d/'folders', per_class=3, size=60)
    torch.manual_seed(0)
    save_checkpoint(d/'tiny.pt', create_model('mobile_fer'), epoch=0)
    (d/'garbage.pt').write_bytes(b'not a checkpoint')
    torch.save({'weights': torch.zeros(3)}, d/'foreign.pt')
    (d/'empty').mkdir()
    return d

def run_cli(d, *args):
    env = dict(os.environ, FER_NB_CACHE=str(d/'cache'), OMP_NUM_THREADS='1')
    return subprocess.run(CLI + [str(a) for a in args], capture_output=True, text=True, env=env, cwd=d, timeout=300)

def main_in_process(d, capsys, monkeypatch, *args):
    "The same CLI entry point in this process (faster than a subprocess): (exit code, stdout, stderr)."
    from fer_nb.cli import main
    monkeypatch.setenv('FER_NB_CACHE', str(d/'cache'))
    threads = torch.get_num_threads()
    try: code = main([str(a) for a in args])
    finally: torch.set_num_threads(threads)
    out = capsys.readouterr()
    return code, out.out, out.err

def test_eval_json(tiny):
    r = run_cli(tiny, 'eval', '--checkpoint', tiny/'tiny.pt', '--data', tiny/'ferplus', '--json', '--threads', '1')
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert 0 <= j['accuracy'] <= 1 and j['n_images'] == 12 and j['tta'] == 'none'
    assert j['vote_accuracy'] is not None and len(j['confusion']) == 7 and 'happiness' in j['per_class']

def test_eval_tta_reports_both(tiny):
    r = run_cli(tiny, 'eval', '--checkpoint', tiny/'tiny.pt', '--data', tiny/'ferplus', '--format', 'ferplus', '--split', 'valid',
                '--tta', 'ten_crop', '--json', '--threads', '1')
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j['tta'] == 'ten_crop' and j['without_tta']['tta'] == 'none' and 'accuracy' in j['without_tta']

def test_eval_cross_dataset(tiny):
    "A folder set with contempt and no neutral: contempt faces excluded and reported, neutral listed as absent."
    r = run_cli(tiny, 'eval', '--checkpoint', tiny/'tiny.pt', '--data', tiny/'folders', '--json', '--threads', '1')
    assert r.returncode == 0, r.stderr
    j = json.loads(r.stdout)
    assert j['excluded'] == {'contempt': 3} and j['n_images'] == 6 and j['n_total'] == 9
    assert 'neutral' in j['absent_classes'] and j['vote_accuracy'] is None

def test_eval_cross_dataset_text(tiny, capsys, monkeypatch):
    code, out, _ = main_in_process(tiny, capsys, monkeypatch, 'eval', '--checkpoint', tiny/'tiny.pt', '--data', tiny/'folders', '--threads', '1')
    assert code == 0 and 'contempt (3 faces)' in out and 'absent from the data' in out and 'neutral' in out

def test_errors_exit_2_in_a_subprocess(tiny):
    "A real process: exit code 2, nothing on stdout, one line on stderr."
    for args, msg in [(['--checkpoint', tiny/'garbage.pt', '--data', tiny/'ferplus'], 'not a readable checkpoint'),
                      (['--checkpoint', tiny/'tiny.pt', '--data', tiny/'nowhere'], 'dataset not found')]:
        r = run_cli(tiny, 'eval', *args)
        assert r.returncode == 2 and r.stdout == '', r
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith('fer-nb: error:') and msg in r.stderr, r.stderr

@pytest.mark.parametrize('ck,msg', [('garbage.pt', 'not a readable checkpoint'), ('foreign.pt', 'not a fer_nb checkpoint'),
                                    ('missing.pt', 'checkpoint not found')])
def test_bad_checkpoint(tiny, capsys, monkeypatch, ck, msg):
    code, out, err = main_in_process(tiny, capsys, monkeypatch, 'eval', '--checkpoint', tiny/ck, '--data', tiny/'ferplus')
    assert code == 2 and out == ''
    assert len(err.strip().splitlines()) == 1 and err.startswith('fer-nb: error:') and msg in err, err

@pytest.mark.parametrize('data,extra,msg', [('nowhere', [], 'dataset not found'), ('empty', [], 'no folder names match'),
                                            ('ferplus', ['--split', 'dev'], 'unknown split'),
                                            ('ferplus', ['--format', 'fer2013'], 'fer2013 csv not found')])
def test_bad_dataset(tiny, capsys, monkeypatch, data, extra, msg):
    code, out, err = main_in_process(tiny, capsys, monkeypatch, 'eval', '--checkpoint', tiny/'tiny.pt', '--data', tiny/data, *extra)
    assert code == 2 and len(err.strip().splitlines()) == 1 and msg in err, err

def test_no_shipped_model(tiny, tmp_path):
    "fer_nb without models/ (a copy of the package alone, run outside any checkout): one line, exit 2."
    import shutil
    shutil.copytree(ROOT/'fer_nb', tmp_path/'pkg'/'fer_nb')
    env = dict(os.environ, PYTHONPATH=str(tmp_path/'pkg'), FER_NB_CACHE=str(tmp_path/'cache'))
    env.pop('FER_NB_CHECKPOINT', None)
    r = subprocess.run(CLI + ['eval', '--data', str(tiny/'ferplus')], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 2 and 'no shipped model' in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr

def test_eval_and_export_honour_FER_NB_CHECKPOINT(tiny):
    "One rule for every command: $FER_NB_CHECKPOINT names the model when --checkpoint does not."
    env = dict(os.environ, FER_NB_CACHE=str(tiny/'cache'), OMP_NUM_THREADS='1', FER_NB_CHECKPOINT=str(tiny/'tiny.pt'))
    r = subprocess.run(CLI + ['eval', '--data', str(tiny/'ferplus'), '--json'], capture_output=True, text=True, env=env, cwd=tiny, timeout=300)
    assert r.returncode == 0 and json.loads(r.stdout)['checkpoint'] == 'tiny', r.stderr
    r = subprocess.run(CLI + ['export', '--onnx', str(tiny/'env.onnx')], capture_output=True, text=True, env=env, cwd=tiny, timeout=300)
    assert r.returncode == 0, r.stderr
    import onnx
    meta = {p.key: p.value for p in onnx.load(str(tiny/'env.onnx')).metadata_props}
    assert meta['source'].endswith('tiny.pt') and meta['prior'] == 'uniform'

def test_export_onnx_parity(tiny):
    out = tiny/'onnx'/'tiny.onnx'
    r = run_cli(tiny, 'export', '--checkpoint', tiny/'tiny.pt', '--onnx', out)
    assert r.returncode == 0, r.stderr
    import onnxruntime as ort
    from fer_nb.onnx_model import onnx_parity
    from fer_nb.model import load_checkpoint
    assert onnx_parity(tiny/'tiny.pt', out, n=16) <= 1e-4
    m, ck = load_checkpoint(tiny/'tiny.pt')
    sess = ort.InferenceSession(str(out), providers=['CPUExecutionProvider'])
    meta = sess.get_modelmeta().custom_metadata_map
    assert json.loads(meta['classes']) == ck['classes']
    for n in (1, 5):   # dynamic batch axis; uint8 pixels / 255 give PyTorch's uint8 result
        x = torch.randint(0, 256, (n, 1, 48, 48), dtype=torch.uint8)
        with torch.no_grad(): ref = m(x).numpy()
        got = sess.run(None, {'faces': (x.float()/255).numpy()})[0]
        assert got.shape == (n, 7) and np.abs(got - ref).max() <= 1e-4

def test_export_bad_checkpoint(tiny, capsys, monkeypatch):
    code, _, err = main_in_process(tiny, capsys, monkeypatch, 'export', '--checkpoint', tiny/'garbage.pt', '--onnx', tiny/'x.onnx')
    assert code == 2 and len(err.strip().splitlines()) == 1 and not (tiny/'x.onnx').exists()

def test_papermill_notebook(tiny, tmp_path):
    import papermill as pm
    out = tmp_path/'eval'
    ck = tmp_path/'model.pt'; ck.write_bytes((tiny/'tiny.pt').read_bytes())
    from fastcore.xtras import modified_env
    with modified_env('FER_NB_KDEF_DIR', FER_NB_PAPERMILL='1', FER_NB_CACHE=str(tmp_path/'cache')):   # KDEF unset: its cell says it skipped
        pm.execute_notebook(str(ROOT/'nbs'/'03_eval.ipynb'), str(tmp_path/'03_eval.out.ipynb'), cwd=str(ROOT/'nbs'),
                            kernel_name='python3', progress_bar=False,
                            parameters=dict(checkpoint=str(ck), data_dir=str(tiny/'ferplus'), format='ferplus', split='test',
                                            limit=8, tta='flip', out_dir=str(out), save_card=True, threads=1))
    for t in ('none', 'flip'):
        for f in ('confusion', 'per_class', 'mistakes'): assert (out/f'model_{t}_{f}.png').exists()
    metrics = json.loads((out/'model_metrics.json').read_text())
    # FERPlus: the benchmark prior (train), with and without TTA, then the uniform prior (balanced accuracy)
    assert [(m['tta'], m['prior']) for m in metrics] == [('none', 'train'), ('flip', 'train'), ('none', 'uniform')]
    assert metrics[0]['n_images'] == 8 and 0 <= metrics[2]['balanced_accuracy'] <= 1
    assert 'skipping KDEF: FER_NB_KDEF_DIR is not set' in (tmp_path/'03_eval.out.ipynb').read_text()
    card = json.loads(ck.with_suffix('.json').read_text())
    assert set(card['evaluations']) == {'ferplus/test[n=8]', 'ferplus/test[n=8]+flip', 'ferplus/test[n=8]@uniform'}
    assert card['model']['name'] == 'mobile_fer'

def test_standardising_model_round_trips(tmp_path):
    "A model that normalises each face keeps doing so after save/load and in its ONNX export."
    from torch import nn
    from fer_nb.model import FERNet, load_checkpoint
    from fer_nb.onnx_model import export_onnx, onnx_parity
    save_checkpoint(tmp_path/'std.pt', create_model('mobile_fer', standardise=True), epoch=0)
    m, ck = load_checkpoint(tmp_path/'std.pt')
    assert ck['arch']['standardise'] and m.standardise
    torch.manual_seed(0)   # a linear "backbone": its logits move with every pixel, so a missed step would show
    linear = lambda std: FERNet(nn.Sequential(nn.Flatten(), nn.Linear(48*48, 7)), standardise=std).eval()
    dark = torch.randint(20, 90, (4, 1, 48, 48), dtype=torch.uint8)
    bright = (dark.float()*1.8 + 60).clamp(0, 255).round().to(torch.uint8)   # brighter and more contrasted
    with torch.no_grad():
        plain, std = linear(False), linear(True)
        std.backbone.load_state_dict(plain.backbone.state_dict())
        assert (plain(dark) - plain(bright)).abs().max() > 1
        assert (std(dark) - std(bright)).abs().max() < 0.05
    export_onnx(std, tmp_path/'std.onnx')
    assert onnx_parity(std, tmp_path/'std.onnx', n=16) <= 1e-4

def test_readme_table_is_the_cards():
    "The README's results table is exactly what the shipped models' cards give (`fer-nb eval --readme-table README.md` rewrites it)."
    from fer_nb.cards import RESULTS_MARKERS, results_table, shipped_cards
    text = (ROOT/'README.md').read_text()
    start, end = RESULTS_MARKERS
    assert text.count(start) == 1 and text.count(end) == 1, 'the README has no results markers'
    table = text[text.index(start) + len(start):text.index(end)].strip('\n')
    assert table == results_table(shipped_cards()), 'README table drifted from the cards: run fer-nb eval --readme-table README.md'

def test_kdef_without_its_variable(tiny):
    "`fer-nb eval --kdef` with $FER_NB_KDEF_DIR unset: one line that names the variable, exit 2."
    env = {k: v for k, v in os.environ.items() if k != 'FER_NB_KDEF_DIR'}
    r = subprocess.run(CLI + ['eval', '--kdef', '--checkpoint', str(tiny/'tiny.pt')], capture_output=True, text=True, env=env, cwd=tiny, timeout=300)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and 'FER_NB_KDEF_DIR is not set' in r.stderr, r.stderr

def test_kdef_accuracy_is_the_cards(tmp_path, monkeypatch):
    "The shipped model on KDEF ($FER_NB_KDEF_DIR, whole photos, uniform prior) scores what its card says, within a point."
    if not os.environ.get('FER_NB_KDEF_DIR'): pytest.skip('FER_NB_KDEF_DIR is not set: no KDEF photos to check the card against')
    from fer_nb.cards import read_card
    from fer_nb.eval import kdef_dir, run_eval
    from fer_nb.model import shipped_model_path
    monkeypatch.setenv('FER_NB_CACHE', str(tmp_path/'cache'))
    uniform = run_eval(shipped_model_path(), kdef_dir(), 'photos', prior='uniform')[0]
    carded = read_card(shipped_model_path())['evaluations']['kdef/all']['accuracy']
    print(f'KDEF {uniform.accuracy:.4f}, card {carded:.4f}')
    assert uniform.metrics['n_images'] == 980 and abs(uniform.accuracy - carded) <= 0.01, (uniform.accuracy, carded)

def test_photos_are_cropped_at_the_models_input_size(tmp_path, monkeypatch):
    "A 64-px model is evaluated on 64-px crops of whole photos, as the Predictor crops them, not 48-px crops blown up; a faceless photo keeps its row."
    from fer_nb.eval import load_dataset, run_eval
    from fer_nb.model import create_model, save_checkpoint
    from fer_nb.synthetic import make_photo_folder
    monkeypatch.setenv('FER_NB_CACHE', str(tmp_path/'cache'))
    root = make_photo_folder(tmp_path/'photos', per_class=1, no_face=1)
    small, big = load_dataset(root, 'photos', 'all'), load_dataset(root, 'photos', 'all', size=64)
    assert small.images.shape[1:] == (48, 48) and big.images.shape[1:] == (64, 64) and len(big) == len(small)
    assert list(big.meta.face_found) == list(small.meta.face_found) and not big.meta.face_found.all()
    assert not big.images[~big.meta.face_found.to_numpy()].any()                  # the faceless rows are blank
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path/'m64.pt', create_model('resnet_fer', in_size=64))
    result = run_eval(ck, root, 'photos', prior='uniform')[0]
    assert result.metrics['n_images'] == len(big)
    assert (tmp_path/'cache').is_dir() and any('64px' in p.name for p in (tmp_path/'cache').rglob('*'))   # the 64-px crops are cached apart from the 48-px ones

def test_a_64px_model_runs_on_onnx_runtime(tmp_path, monkeypatch):
    "A model trained at in_size 64 exports to ONNX with 64-px input, so the Predictor's default runtime takes the face step's 64-px crops and answers as PyTorch does."
    from fer_nb.onnx_model import export_onnx, onnx_parity
    from fer_nb.predict import Predictor
    from fer_nb.synthetic import make_photo_folder
    monkeypatch.setenv('FER_NB_CACHE', str(tmp_path/'cache'))
    torch.manual_seed(0)
    ck = save_checkpoint(tmp_path/'m64.pt', create_model('resnet_fer', in_size=64))
    assert onnx_parity(ck, export_onnx(ck, tmp_path/'m64.onnx'), n=8) <= 1e-4
    photo = next(p for p in sorted(make_photo_folder(tmp_path/'photos', per_class=1).rglob('face*.jpg')))
    faces = {rt: Predictor.load(ck, runtime=rt).predict(photo) for rt in ('torch', 'onnx')}
    assert len(faces['onnx']) == len(faces['torch']) >= 1 and faces['onnx'][0].crop.shape == (64, 64)
    assert max(abs(faces['onnx'][0].probs[c] - faces['torch'][0].probs[c]) for c in faces['torch'][0].probs) <= 1e-3
