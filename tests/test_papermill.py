"papermill re-runs the data, model and CLI notebooks headlessly with their parameters (train and eval have their own tests)."
import json, subprocess
import nbformat, pytest
from conftest import ROOT, BIN

def _papermill(nb, out, env, *params):
    args = [a for k, v in params for a in ('-p', k, str(v))]
    r = subprocess.run([str(BIN/'papermill'), f'nbs/{nb}.ipynb', str(out), '-k', 'python3', *args],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    return nbformat.read(str(out), as_version=4)

def _text(nb):
    "Everything the executed notebook printed or displayed as text."
    return '\n'.join(o.get('text', '') + o.get('data', {}).get('text/plain', '') for c in nb.cells if c.cell_type == 'code' for o in c.get('outputs', []))

def test_data_notebook(tmp_path, env):
    nb = _papermill('00_data', tmp_path/'data.ipynb', env, ('data_dir', tmp_path/'no-ferplus-here'))
    assert 'FERPlus not found' in _text(nb)      # the parameter reached the official-count check

def test_model_notebook(tmp_path, env):
    nb = _papermill('01_model', tmp_path/'model.ipynb', env, ('threads', 1))
    text = _text(nb)
    for name in ('mobile_fer', 'resnet_fer', 'vgg13'): assert f'{name}' in text and 'ms/face' in text

def test_cli_notebook_runs_a_command(tmp_path, env):
    from fer_nb.model import shipped_model_path, CheckpointError
    try: shipped_model_path()
    except CheckpointError: pytest.skip('no shipped model in models/')
    nb = _papermill('06_cli', tmp_path/'cli.ipynb', env, ('command', f'predict {ROOT/"samples"/"astronaut.png"} --json'))
    text = _text(nb)
    printed, _ = json.JSONDecoder().raw_decode(text[text.index('[\n'):])   # the command's JSON, kept in the notebook
    assert printed[0]['faces'][0]['label'] == 'happiness', printed

def test_cli_notebook_fails_when_the_command_fails(tmp_path, env):
    r = subprocess.run([str(BIN/'papermill'), 'nbs/06_cli.ipynb', str(tmp_path/'cli.ipynb'), '-k', 'python3',
                        '-p', 'command', f'predict {tmp_path/"missing.png"}'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode != 0 and 'exited with 2' in r.stderr

def test_faces_notebook(tmp_path, env):
    "The face-step notebook re-runs headlessly; the FERPlus framing measured again where FERPlus exists, a printed skip where not."
    nb = _papermill('04_faces', tmp_path/'faces.ipynb', env, ('n_frame_faces', 2000), ('frame_side', 192))
    assert 'yunet' in _text(nb)

def test_synthetic_notebook(tmp_path, env):
    nb = _papermill('07_synthetic', tmp_path/'synthetic.ipynb', env, ('seed', 1))
    assert nb.cells[-1].cell_type == 'code'

def test_settings_notebook(tmp_path, env):
    "The settings chapter re-runs headlessly, and its names are the ones fer_nb.train hands out."
    from fer_nb.settings import is_staged
    recipe = next(p for p in sorted((ROOT/'configs').glob('*.yaml')) if not is_staged(p))   # one run's settings (not a multi-stage recipe)
    nb = _papermill('02_settings', tmp_path/'settings.ipynb', env, ('recipe', recipe))
    import yaml
    from fer_nb.settings import make_config
    printed = yaml.safe_load(_text(nb)[_text(nb).index('run: '):])   # the resolved recipe, printed last
    assert printed == make_config(recipe, check_files=False)
    import fer_nb.settings, fer_nb.train
    assert fer_nb.train.make_config is fer_nb.settings.make_config and fer_nb.train.DEFAULTS is fer_nb.settings.DEFAULTS

def test_corpus_notebook_on_ray(tmp_path, env):
    "The corpus chapter with papermill's parameters: the demo on the ray engine into a folder of the caller's, checked against the local engine."
    pytest.importorskip('ray', reason="Ray is not installed (pip install 'fer_nb[cluster]')")
    out = tmp_path/'results'
    nb = _papermill('12_corpus', tmp_path/'corpus.ipynb', env, ('engine', 'ray'), ('out', out))
    import pandas as pd
    t = pd.read_parquet(out)
    assert set(t.kind) == {'photo', 'video'} and t.worker.str.len().eq(12).all()   # Ray node ids, not 'local'
    assert "['local']" in _text(nb)                                                   # the twin run: the local engine
