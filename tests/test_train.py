"Training end to end in fresh processes: papermill on the train notebook, and DDP with 2 gloo processes."
import json, subprocess, sys
from pathlib import Path
import numpy as np
import torch
from conftest import ROOT, BIN

def _train_cli(args, env, nproc=1):
    cmd = ([str(BIN/'torchrun'), '--standalone', '--nproc_per_node', str(nproc), '-m', 'fer_nb.cli']
           if nproc > 1 else [sys.executable, '-m', 'fer_nb.cli'])
    r = subprocess.run(cmd + ['train', *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    runs = sorted((json.loads(l) for l in r.stdout.splitlines() if l.startswith('{')), key=lambda d: d['rank'])
    assert len(runs) == nproc
    return runs

def test_papermill_train_notebook(tmp_path, env, tiny_ferplus):
    out = tmp_path/'train.ipynb'
    r = subprocess.run([str(BIN/'papermill'), 'nbs/02_train.ipynb', str(out), '-k', 'python3', '--log-output',
                        '-p', 'run', 'ci', '-p', 'epochs', '2', '-p', 'train_limit', '150', '-p', 'valid_limit', '40',
                        '-p', 'model', 'mobile_fer', '-p', 'label_mode', 'majority',
                        '-p', 'out_dir', str(tmp_path/'ck'), '-p', 'log_dir', str(tmp_path/'logs')],
                       cwd=ROOT, env=dict(env, FERPLUS_DIR=str(tiny_ferplus)), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    assert 'epoch 2/2' in r.stderr            # text progress and epoch lines reach papermill's log
    ck = torch.load(tmp_path/'ck'/'ci'/'best.pt', weights_only=True)
    assert ck['config']['train_limit'] == 150 and ck['config']['model'] == 'mobile_fer'
    from fer_nb.model import load_checkpoint
    m, _ = load_checkpoint(tmp_path/'ck'/'ci'/'best.pt')
    probs = m(torch.zeros(4, 1, 48, 48, dtype=torch.uint8)).softmax(1)
    assert probs.shape == (4, 7) and torch.allclose(probs.sum(1), torch.ones(4))
    assert (tmp_path/'logs'/'ci'/'history.csv').read_text().count('\n') == 3
    assert list((tmp_path/'logs'/'ci').glob('events.out.tfevents.*'))   # TensorBoard scalars

def _weights(path):
    sd = torch.load(path, weights_only=True)['state_dict']
    return torch.cat([v.float().flatten() for k, v in sd.items() if 'running' not in k and 'num_batches' not in k])

def test_ddp_two_gloo_processes_match_single(tmp_path, env, tiny_ferplus):
    """DDP averages the ranks' gradients every step: the replicas stay identical, and 2 processes on half
    batches take the steps 1 process takes on whole batches, up to batch norm, whose statistics are per rank."""
    base = ['--set', f'data_dir={tiny_ferplus}', '--set', 'model=mobile_fer', '--set', 'epochs=1', '--set', 'batch_size=32',
            '--set', 'lr=0.02', '--set', 'label_mode=majority', '--set', 'progress=none', '--set', 'threads=1',
            '--set', f'out_dir={tmp_path}/ck', '--set', f'log_dir={tmp_path}/logs']
    rank0, rank1 = _train_cli(base + ['--set', 'run=ddp'], env, nproc=2)
    single, = _train_cli(base + ['--set', 'run=single'], env)
    other, = _train_cli(base + ['--set', 'run=other', '--set', 'seed=1'], env)
    assert (rank0['world'], rank1['world'], single['world']) == (2, 2, 1)
    assert rank0['param_checksum'] == rank1['param_checksum']          # gradients were all-reduced: replicas agree bit for bit
    assert rank0['param_checksum'] != single['param_checksum']          # (per-rank batch norm makes it differ from 1 process)
    w_ddp, w_single, w_other = (_weights(tmp_path/'ck'/r/'last.pt') for r in ('ddp', 'single', 'other'))
    assert (w_ddp - w_single).norm() < 0.25*(w_other - w_single).norm()

def test_papermill_given_values_win_over_the_recipe(tmp_path, env, tiny_ferplus):
    """Issue 12: a value given with -p wins over config_file's recipe even when it equals DEFAULTS, and the
    recipe wins over DEFAULTS. Before the fix, lr 0.1 and label_mode crossentropy (both DEFAULTS) were dropped."""
    recipe = tmp_path/'recipe.yaml'
    recipe.write_text('model: mobile_fer\nepochs: 1\nlr: 0.05\nbatch_size: 32\nlabel_mode: majority\nthreads: 1\n'
                      'progress: none\ntrain_limit: 96\nvalid_limit: 24\nshift: 0.05\n')
    r = subprocess.run([str(BIN/'papermill'), 'nbs/02_train.ipynb', str(tmp_path/'train.ipynb'), '-k', 'python3',
                        '-p', 'config_file', str(recipe), '-p', 'run', 'given',
                        '-p', 'lr', '0.1', '-p', 'label_mode', 'crossentropy', '-p', 'train_limit', '0',
                        '-p', 'out_dir', str(tmp_path/'ck'), '-p', 'log_dir', str(tmp_path/'logs')],
                       cwd=ROOT, env=dict(env, FERPLUS_DIR=str(tiny_ferplus)), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    cfg = torch.load(tmp_path/'ck'/'given'/'last.pt', weights_only=True)['config']
    # given with -p (each equal to DEFAULTS) beats the recipe
    assert (cfg['lr'], cfg['label_mode'], cfg['train_limit']) == (0.1, 'crossentropy', 0)
    # the recipe beats DEFAULTS
    assert (cfg['model'], cfg['epochs'], cfg['batch_size'], cfg['valid_limit'], cfg['shift']) == ('mobile_fer', 1, 32, 24, 0.05)
    # neither: DEFAULTS
    assert (cfg['flip'], cfg['rotate'], cfg['logit_adjust']) == (True, 10.0, 0.0)

def test_papermill_misspelt_parameter_stops_the_run(tmp_path, env, tiny_ferplus):
    r = subprocess.run([str(BIN/'papermill'), 'nbs/02_train.ipynb', str(tmp_path/'train.ipynb'), '-k', 'python3',
                        '-p', 'epoch', '3', '-p', 'out_dir', str(tmp_path/'ck')],
                       cwd=ROOT, env=dict(env, FERPLUS_DIR=str(tiny_ferplus)), capture_output=True, text=True, timeout=900)
    assert r.returncode != 0 and "'epoch'" in r.stderr
    assert not (tmp_path/'ck').exists()   # stopped before any training

def test_every_recipe_in_configs_resolves_to_a_valid_config():
    """Each shipped recipe, its `base` chain merged, holds only known settings with valid values and names its own run
    (a multi-stage recipe: every stage).
    `init` and `teachers` point at checkpoints a fresh clone lacks, so their files are not required here."""
    from fer_nb.train import load_yaml, make_config
    from fer_nb.stages import plan_stages
    recipes = sorted((ROOT/'configs').glob('*.yaml'))
    assert len(recipes) >= 4
    runs = {}
    for p in recipes:
        d = load_yaml(p)
        assert 'base' not in d, p.name
        if 'stages' in d: runs[p.name] = plan_stages(p)[-1].product.parent.name   # a multi-stage recipe: every stage resolves
        else: runs[p.name] = make_config(p, check_files=False)['run']
    assert len(set(runs.values())) == len(runs), runs   # no two recipes write into one run's checkpoints

def test_print_config_resolves_a_recipe_chain(env):
    """`fer-nb train --print-config` shows the settings a run would use: balanced_long.yaml states only what it changes
    from balanced.yaml, and --set still wins; nothing is trained."""
    import yaml
    from fer_nb.train import load_yaml
    r = subprocess.run([sys.executable, '-m', 'fer_nb.cli', 'train', '--config', 'experiments/configs/balanced_long.yaml',
                        '--set', 'lr=0.05', '--print-config'], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    cfg = yaml.safe_load(r.stdout)
    parent = load_yaml(ROOT/'experiments'/'configs'/'balanced.yaml')
    assert (cfg['run'], cfg['epochs'], cfg['lr']) == ('balanced_long', 50, 0.05)
    assert all(cfg[k] == v for k, v in parent.items() if k not in ('run', 'epochs', 'lr')), 'the rest comes from balanced.yaml'
    recorded = ROOT/'experiments'/'configs'
    assert 'base' not in (recorded/'balanced.yaml').read_text() and 'base:' in (recorded/'balanced_long.yaml').read_text()

def test_mixture_weights_give_each_source_its_share():
    "A source's share of the draws is its weight over the sum, whatever its size."
    from fer_nb.train import mixture_weights
    w = mixture_weights([1000, 10, 90], [1.0, 0.5, 2.5])
    assert w.shape == (1100,) and abs(w.sum() - 1) < 1e-9
    shares = [w[:1000].sum(), w[1000:1010].sum(), w[1010:].sum()]
    assert np.allclose(shares, [0.25, 0.125, 0.625])
    assert np.allclose(w[1000:1010], w[1000])                # equal chances inside one source

def test_cli_trains_on_a_mixture_of_datasets(tmp_path, env, tiny_ferplus):
    """`--set datasets=[...]` adds a RAF-DB tree and an AffectNet tree to FERPlus train; one epoch trains and the
    checkpoint records the mixture. A missing dataset path stops the run before any work, in one line."""
    from fer_nb.synthetic import make_rafdb_tree, make_affectnet_tree
    raf, aff = make_rafdb_tree(tmp_path/'raf', n=40), make_affectnet_tree(tmp_path/'aff', n=30)
    base = ['--set', f'data_dir={tiny_ferplus}', '--set', 'model=mobile_fer', '--set', 'epochs=1', '--set', 'batch_size=32',
            '--set', 'label_mode=majority', '--set', 'progress=none', '--set', 'threads=1', '--set', 'bn_recal=256',
            '--set', f'out_dir={tmp_path}/ck', '--set', f'log_dir={tmp_path}/logs', '--set', 'run=mix']
    mixture = f'datasets=[{{format: rafdb, path: {raf}, weight: 0.5}}, {{format: affectnet, path: {aff}}}]'
    run, = _train_cli(base + ['--set', mixture], env)
    ck = torch.load(tmp_path/'ck'/'mix'/'last.pt', weights_only=True)
    assert ck['config']['datasets'] == [dict(format='rafdb', path=str(raf), weight=0.5), dict(format='affectnet', path=str(aff), weight=1.0)]
    assert (tmp_path/'logs'/'mix'/'history.csv').read_text().count('\n') == 2 and run['best_valid_acc'] >= 0
    r = subprocess.run([sys.executable, '-m', 'fer_nb.cli', 'train', *base, '--set', 'datasets=[{format: expw, path: /no/expw}]'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and 'expw path not found: /no/expw' in r.stderr and 'Traceback' not in r.stderr

def test_reframe_setting_trains_on_faces_through_the_face_step(tmp_path, env, tiny_ferplus):
    """`reframe=true` trains and validates on FERPlus re-framed by the face step, cached beside the plain faces.
    The synthetic faces are noise, so YuNet finds none: every face is kept as it was, and the run still trains."""
    _train_cli(['--set', f'data_dir={tiny_ferplus}', '--set', 'model=mobile_fer', '--set', 'epochs=1', '--set', 'batch_size=32',
                '--set', 'label_mode=majority', '--set', 'progress=none', '--set', 'threads=1', '--set', 'reframe=true',
                '--set', f'out_dir={tmp_path}/ck', '--set', f'log_dir={tmp_path}/logs', '--set', 'run=reframed'], env)
    assert torch.load(tmp_path/'ck'/'reframed'/'last.pt', weights_only=True)['config']['reframe'] is True
    cached = sorted(p.name for p in (tmp_path/'cache').glob('ferplus-*.npz'))
    assert any('reframed-yunet192' in n and n.startswith('ferplus-train') for n in cached), cached
    assert any('reframed-yunet192' in n and n.startswith('ferplus-valid') for n in cached), cached
    from fer_nb.faces import load_ferplus_reframed
    import warnings
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        fs = load_ferplus_reframed(tiny_ferplus, 'valid', cache=tmp_path/'cache')
    assert not fs.meta.reframed.any() and 'no face found in 48 of 48' in str(caught[-1].message)
