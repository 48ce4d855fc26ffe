"The wheel a user installs: it carries the shipped model, YuNet, the sample, the app page and the light page, and works from any folder."
import json, os, shutil, subprocess, sys, sysconfig, tarfile, zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable

def bundled()->set:
    "What the wheel must carry under fer_nb/_bundle/: the shipped models (models/DEFAULT's and models/NAMES's) and their cards, YuNet, the sample, the app page."
    models = {(ROOT/'models'/'DEFAULT').read_text().strip()}
    names = ROOT/'models'/'NAMES'
    if names.is_file(): models |= {l.partition('#')[0].partition(':')[2].strip() for l in names.read_text().splitlines() if ':' in l.partition('#')[0]}
    return {'models/DEFAULT', *({'models/NAMES'} if names.is_file() else set()), *{f'models/{m}' for m in models},
            *{f'models/{Path(m).with_suffix(".json")}' for m in models},
            'models/yunet/yunet_n_640_640.onnx', 'models/yunet/LICENSE', 'models/yunet/README.md',
            'samples/astronaut.png', 'samples/README.md', 'nbs/app.ipynb'}

def run(cmd, **kw)->subprocess.CompletedProcess:
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r

# what a build never reads (and other people's work in progress): left out of the copy the test builds from
NOT_SOURCE = shutil.ignore_patterns('.git', '.venv', 'data', 'checkpoints', 'logs', 'runs', 'build', 'dist', '*.egg-info',
                                    '__pycache__', '.pytest_cache', '.ipynb_checkpoints', '_docs', '_proc')

@pytest.fixture(scope='module')
def dist(tmp_path_factory):
    "sdist and wheel built from a copy of the checkout (`python -m build`: the wheel is built from the sdist), no network."
    if not (ROOT/'models'/'DEFAULT').is_file(): pytest.skip('no shipped model (models/DEFAULT is missing)')
    src, out = tmp_path_factory.mktemp('src')/'fer_nb', tmp_path_factory.mktemp('dist')
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)    # a build writes egg-info/ and build/ beside setup.py: not in the shared tree
    try: import build  # noqa: F401
    except ImportError: run([PY, '-m', 'pip', 'wheel', '--no-deps', '--no-build-isolation', '-w', out, src], cwd=src)
    else: run([PY, '-m', 'build', '--no-isolation', '--outdir', out, src], cwd=src)
    whl, = out.glob('fer_nb-*.whl')
    print(f'wheel: {whl.name}, {whl.stat().st_size/1e6:.2f} MB')
    return out

def test_wheel_contents(dist):
    "The wheel carries exactly the bundled files (no other checkpoint, no figures) and every module."
    whl, = dist.glob('fer_nb-*.whl')
    names = zipfile.ZipFile(whl).namelist()
    bundle = {n.removeprefix('fer_nb/_bundle/') for n in names if n.startswith('fer_nb/_bundle/')}
    assert bundle == bundled(), sorted(bundle ^ bundled())
    assert {f'fer_nb/{p.name}' for p in (ROOT/'fer_nb').glob('*.py')} <= set(names)
    static = {f'fer_nb/static/{p.name}' for p in (ROOT/'fer_nb'/'static').glob('*')}      # the light page `fer-nb serve` shows at /
    assert static and static <= set(names), sorted(static - set(names))
    assert {n for n in names if n.endswith('.pt')} == {f'fer_nb/_bundle/{b}' for b in bundled() if b.endswith('.pt')}   # no other checkpoint
    assert whl.stat().st_size < 20e6, whl.stat().st_size
    entry = [n for n in names if n.endswith('.dist-info/entry_points.txt')]
    assert entry and 'fer-nb = fer_nb.cli:main' in zipfile.ZipFile(whl).read(entry[0]).decode()

def test_sdist_carries_the_bundle(dist):
    "The sdist holds the same files at their own paths (a wheel built from it is complete), and what setup.py reads."
    sd, = dist.glob('fer_nb-*.tar.gz')
    top = sd.name.removesuffix('.tar.gz')
    names = {n.removeprefix(top + '/') for n in tarfile.open(sd).getnames()}
    assert bundled() | {'setup.py', 'settings.ini', 'README.md'} <= names
    assert not {n for n in names if n.startswith('models/figures')}

@pytest.fixture(scope='module')
def venv(dist, tmp_path_factory):
    "A fresh virtual environment with the wheel installed (--no-deps), reusing the project's installed dependencies via a .pth line."
    v = tmp_path_factory.mktemp('venv')
    run([PY, '-m', 'venv', '--without-pip', v])
    site = Path(run([v/'bin'/'python', '-c', 'import sysconfig; print(sysconfig.get_path("purelib"))']).stdout.strip())
    # the project's dependencies, but not its editable fer_nb (a plain path line: .pth files there are not run)
    site.joinpath('fer_nb_deps.pth').write_text(sysconfig.get_path('purelib') + '\n')
    # ... and the data files they installed under their prefix (Voila's templates, the widgets' JavaScript), but not
    # the project's kernel spec: the app page's kernel must be this venv's Python, with the installed fer_nb
    for d in ('share/jupyter/lab', 'share/jupyter/labextensions', 'share/jupyter/nbconvert', 'share/jupyter/nbextensions',
              'share/jupyter/voila', 'etc/jupyter'):
        if (Path(sys.prefix)/d).exists(): (v/d).parent.mkdir(parents=True, exist_ok=True); (v/d).symlink_to(Path(sys.prefix)/d)
    whl, = dist.glob('fer_nb-*.whl')
    run([PY, '-m', 'pip', '--python', v/'bin'/'python', 'install', '-q', '--no-deps', '--no-index', whl])
    return v, site

@pytest.fixture
def outside(tmp_path, venv):
    "A folder outside any checkout, and an environment that cannot see the checkout."
    home = tmp_path/'elsewhere'; home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONPATH', 'FER_NB_CHECKPOINT', 'VIRTUAL_ENV')}
    env.update(FER_NB_CACHE=str(tmp_path/'cache'), PATH=f"{venv[0]/'bin'}{os.pathsep}{env.get('PATH', '')}", PYTHONWARNINGS='ignore')
    return home, env

def test_installed_finds_its_files(venv, outside):
    "Imported from the venv, fer_nb finds the model, YuNet, the sample and the app page in fer_nb/_bundle/."
    (v, site), (home, env) = venv, outside
    code = ("import json, fer_nb, fer_nb.data as d\nfrom fer_nb.model import shipped_model_path\nfrom fer_nb.predict import Predictor, sample_path\n"
            "p = Predictor.load()\n"
            "print(json.dumps(dict(pkg=fer_nb.__file__, model=str(shipped_model_path()), sample=str(sample_path()),"
            " app=str(d.find_file('nbs', 'app.ipynb')), yunet=str(d.find_file('models', 'yunet', 'yunet_n_640_640.onnx')),"
            " root=str(d.project_root()), faces=[f.label for f in p.predict(sample_path())])))")
    info = json.loads(run([v/'bin'/'python', '-c', code], cwd=home, env=env).stdout.strip().splitlines()[-1])
    bundle = site/'fer_nb'/'_bundle'
    assert Path(info['pkg']).parent == site/'fer_nb', info
    assert info['root'] == 'None', info                     # not inside a checkout
    for k in ('model', 'sample', 'app', 'yunet'): assert Path(info[k]).is_relative_to(bundle), (k, info)
    assert info['faces'] == ['happiness'], info

def test_installed_cli(venv, outside):
    "`fer-nb predict` on the installed sample from a temporary folder: one face, happiness; `fer-nb models` lists the bundled models; `fer-nb serve --help` runs."
    (v, site), (home, env) = venv, outside
    sample = site/'fer_nb'/'_bundle'/'samples'/'astronaut.png'
    r = run([v/'bin'/'fer-nb', 'predict', sample, '--json'], cwd=home, env=env)
    (res,) = json.loads(r.stdout)
    print('fer-nb predict:', [(f['label'], f['confidence']) for f in res['faces']])
    assert [f['label'] for f in res['faces']] == ['happiness'], res
    listed = json.loads(run([v/'bin'/'fer-nb', 'models', '--json'], cwd=home, env=env).stdout)
    assert listed[0]['default'] and all(Path(m['file']).is_relative_to(site/'fer_nb'/'_bundle') for m in listed), listed
    assert 'usage' in run([v/'bin'/'fer-nb', 'serve', '--help'], cwd=home, env=env).stdout

def test_installed_serve(venv, outside, tmp_path):
    "`fer-nb serve` from a temporary folder serves the installed light page at / and the bundled app page at /notebook/, which executes without an error."
    import signal, socket, time, urllib.error, urllib.request
    (v, site), (home, env) = venv, outside
    kernel = run([v/'bin'/'python', '-c', "from jupyter_client.kernelspec import KernelSpecManager as K; print(K().get_kernel_spec('python3').argv[0])"],
                 cwd=home, env=env).stdout.strip()
    assert kernel in ('python', 'python3', str(v/'bin'/'python')), f'the page would run in {kernel}, not the fresh venv'
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]
    log = open(tmp_path/'serve.log', 'w')
    p = subprocess.Popen([v/'bin'/'fer-nb', 'serve', '--port', str(port)], cwd=home, env=env,
                         stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline, page = time.time() + 120, None
        while page is None:
            try:
                with urllib.request.urlopen(f'http://127.0.0.1:{port}/notebook/', timeout=120) as r: page = r.read().decode()
            except (urllib.error.URLError, ConnectionError):
                assert p.poll() is None and time.time() < deadline, (tmp_path/'serve.log').read_text()[-3000:]
                time.sleep(0.5)
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/', timeout=30) as r: light = r.read().decode()
        with urllib.request.urlopen(f'http://127.0.0.1:{port}/static/app.js', timeout=30) as r: script = r.read().decode()
    finally:
        os.killpg(p.pid, signal.SIGTERM)
        try: p.wait(20)
        except subprocess.TimeoutExpired: os.killpg(p.pid, signal.SIGKILL); p.wait()
        log.close()
    served = (tmp_path/'serve.log').read_text()
    assert str(site/'fer_nb'/'_bundle'/'nbs'/'app.ipynb') in served, served[-3000:]
    assert 'What does this face say?' in page
    assert 'application/vnd.jupyter.widget-view+json' in page, 'the upload widget was not displayed'
    assert 'type="file"' in light and 'v1/predict' in script, 'the light page is not served from the installed package'
    assert 'Traceback' not in page and 'error when executing' not in page.lower(), page[-3000:]

def test_front_door_layout():
    """configs/ holds at most 5 recipes a user runs; experiments/configs/ holds the rest, every one still resolving
    (its base chain through ../../configs/); no two recipes anywhere share a run; models/ ships one checkpoint."""
    from fer_nb.train import load_yaml, make_config
    user, recorded = sorted((ROOT/'configs').glob('*.yaml')), sorted((ROOT/'experiments'/'configs').glob('*.yaml'))
    assert 3 <= len(user) <= 5, [p.name for p in user]
    assert recorded, 'experiments/configs/ is empty'
    runs = {}
    for p in user + recorded:
        assert 'base' not in load_yaml(p), p
        d = load_yaml(p)   # a multi-stage recipe (stages:) names its run; its stages are checked in test_stages
        runs[str(p.relative_to(ROOT))] = d.get('run', p.stem) if 'stages' in d else make_config(p, check_files=False)['run']
    assert len(set(runs.values())) == len(runs), runs   # no two recipes write into one run's checkpoints
    shipped = sorted(b.removeprefix('models/') for b in bundled() if b.endswith('.pt'))
    assert sorted(p.name for p in (ROOT/'models').glob('*.pt')) == shipped and len(shipped) <= 2   # at most two: the accurate and the fast model

def test_readme_is_a_front_door():
    "The README stays a user's page: at most 220 lines, and its biggest table is the results table generated from the card."
    lines = (ROOT/'README.md').read_text().splitlines()
    assert len(lines) <= 220, f'README.md has {len(lines)} lines: move the detail to the notebooks or experiments/README.md'
    tables, run, start = [], 0, None
    for i, line in enumerate(lines + ['']):
        if line.startswith('|'): run, start = run + 1, start if run else i
        elif run: tables.append((run - 2, start)); run = 0   # data rows: less the header and the |---| line
    rows, at = max(tables)
    assert rows <= 12 and lines[at - 1] == '<!-- results:start -->', (rows, lines[at - 1])

def _exported_cells():
    "(notebook, lines) of every exported code cell: its source lines less the `#| export` line, as nbdev writes them out."
    import json, re
    for nb in sorted((ROOT/'nbs').glob('*.ipynb')):
        for cell in json.loads(nb.read_text())['cells']:
            lines = ''.join(cell['source']).rstrip('\n').splitlines()
            if cell['cell_type'] == 'code' and lines and re.match(r'#\|\s*export\b', lines[0]):
                yield nb.name, len(lines) - 1

def test_rooms_and_chapters_stay_small():
    """The house rules of issue #37: no module over 450 lines (_modidx.py aside), no notebook over 70 cells, and
    chapters like execnb's: the median exported cell at most 12 lines, none over 40."""
    import json, statistics
    long_modules = {p.name: n for p in (ROOT/'fer_nb').glob('*.py') if p.name != '_modidx.py'
                    for n in [len(p.read_text().splitlines())] if n > 450}
    assert not long_modules, f'modules over 450 lines: {long_modules}'
    crowded = {nb.name: n for nb in (ROOT/'nbs').glob('*.ipynb') for n in [len(json.loads(nb.read_text())['cells'])] if n > 70}
    assert not crowded, f'notebooks over 70 cells: {crowded}'
    sizes = list(_exported_cells())
    assert statistics.median(n for _, n in sizes) <= 12, statistics.median(n for _, n in sizes)
    too_long = [(nb, n) for nb, n in sizes if n > 40]
    assert not too_long, f'exported cells over 40 lines: {too_long}'
