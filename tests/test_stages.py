"""Multi-stage recipes (fer_nb.stages): configs/accurate.yaml, the default model's recipe end to end, on synthetic data.

Every stage runs, tiny (`--set` values reach every training stage, in included recipes too): the fast model's teacher and
student (configs/fast.yaml as one stage), three faceres stages each from the one before's EMA weights, and the pair. The
faceres backbone is a random one written where `fer-nb backbone faceres` would put it, so no network is needed."""
import json, subprocess, sys
import numpy as np, torch
from conftest import ROOT

TINY = ['--set', 'epochs=1', '--set', 'train_limit=64', '--set', 'valid_limit=32', '--set', 'batch_size=32', '--set', 'in_size=48',
        '--set', 'bn_recal=64', '--set', 'progress=none', '--set', 'threads=1', '--set', 'label_mode=majority']

def _fake_backbone(folder):
    "A random faceres backbone in the converted format, where fetch_backbone looks first."
    from fer_nb.model import create_model, atomic_save
    torch.manual_seed(0)
    state = create_model('faceres').backbone.state_dict()
    return atomic_save(dict(format='fer_nb/backbone1', name='faceres', package='random weights for a test', state_dict=state), folder/'faceres.pt')

def _accurate(tmp_path, env, *extra):
    r = subprocess.run([sys.executable, '-m', 'fer_nb.cli', 'train', '--config', 'configs/accurate.yaml', *TINY, *extra,
                        '--set', f'out_dir={tmp_path}/ck', '--set', f'log_dir={tmp_path}/logs'],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return r

def test_accurate_recipe_end_to_end(tmp_path, env, tiny_ferplus):
    _fake_backbone(tmp_path)
    env = dict(env, FER_NB_BACKBONES=str(tmp_path), FERPLUS_DIR=str(tiny_ferplus))
    r = _accurate(tmp_path, env)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = json.loads(r.stdout.strip().splitlines()[-1])
    ck = tmp_path/'ck'/'accurate'
    assert summary['product'] == str(ck/'faceres_pair.pt')
    assert [(s['stage'], s['status']) for s in summary['stages']] == [
        ('fast/teacher', 'trained'), ('fast/resnet_fer_distilled', 'trained'), ('faceres_long', 'trained'),
        ('faceres_stage2', 'trained'), ('faceres_stage3', 'trained'), ('faceres_pair', 'combined')]
    # each faceres stage started from the one before's EMA weights; the student learned from the teacher stage
    from fer_nb.model import read_checkpoint
    assert read_checkpoint(ck/'faceres_stage2'/'last.pt')['config']['init'] == str(ck/'faceres_long.pt')
    assert read_checkpoint(ck/'faceres_stage3'/'last.pt')['config']['init'] == str(ck/'faceres_stage2.pt')
    assert read_checkpoint(ck/'faceres_long.pt')['weights'] == 'ema' and read_checkpoint(ck/'faceres_stage3.pt')['weights_dtype'] == 'float16'
    assert read_checkpoint(ck/'fast'/'resnet_fer_distilled'/'last.pt')['config']['teachers'] == [str(ck/'fast'/'teacher.pt')]
    pair = read_checkpoint(ck/'faceres_pair.pt')
    assert pair['config']['members'] == [str(ck/'faceres_stage3.pt'), str(ck/'fast'/'resnet_fer_distilled.pt')]
    # the pair loads in a Predictor and classifies
    from fer_nb.predict import Predictor
    p = Predictor.load(ck/'faceres_pair.pt')
    probs = p.classify(np.random.default_rng(0).integers(0, 256, (3, 48, 48), dtype=np.uint8))
    assert probs.shape == (3, 7) and np.allclose(probs.sum(1), 1, atol=1e-4)
    # a rerun skips every finished stage; a stage whose product is gone but whose run finished is only shipped again
    (ck/'faceres_stage3.pt').unlink(); (ck/'faceres_pair.pt').unlink()
    r = _accurate(tmp_path, env)
    assert r.returncode == 0, r.stderr[-3000:]
    again = json.loads(r.stdout.strip().splitlines()[-1])['stages']
    assert [s['status'] for s in again] == ['skipped']*4 + ['shipped', 'combined']
    # a bad setting is refused before anything trains, in one line naming the recipe and the stage
    r = _accurate(tmp_path, env, '--set', 'epoch=2')
    assert r.returncode == 2 and 'stage teacher: unknown setting(s): epoch' in r.stderr and 'Traceback' not in r.stderr, r.stderr

def test_shipped_multi_stage_recipes_plan():
    "configs/accurate.yaml and configs/fast.yaml plan as the cards say; their faceres and fast stages are the recipes that ran."
    from fer_nb.stages import plan_stages
    from fer_nb.settings import make_config
    plan = plan_stages(ROOT/'configs'/'accurate.yaml')
    assert [s.name for s in plan] == ['fast', 'faceres_long', 'faceres_stage2', 'faceres_stage3', 'faceres_pair']
    assert [s.name for s in plan[0].plan] == ['teacher', 'resnet_fer_distilled']
    ran = dict(faceres_long='faceres_long', faceres_stage2='faceres_stage2', faceres_stage3='faceres_stage3')
    placing = {'run', 'init', 'teachers', 'out_dir', 'log_dir'}
    for s in plan[1:4]:
        then = make_config(ROOT/'experiments'/'configs'/f'{ran[s.name]}.yaml', check_files=False)
        assert {k: v for k, v in s.cfg.items() if k not in placing} == {k: v for k, v in then.items() if k not in placing}, s.name
        assert s.ship['weights'] == 'ema'
    teacher, student = plan[0].plan
    for s, (f, given) in zip(plan[0].plan, [('balanced_long', dict(seed=4)), ('distilled', {})]):
        then = make_config(ROOT/'experiments'/'configs'/f'{f}.yaml', check_files=False, **given)
        assert {k: v for k, v in s.cfg.items() if k not in placing} == {k: v for k, v in then.items() if k not in placing}, s.name
    assert (student.ship['weights'], student.ship['standardise']) == ('final', False) and teacher.ship['weights'] == 'final'
    assert plan[-1].members == [str(plan[3].product), str(plan[0].product)]

def test_papermill_runs_a_multi_stage_recipe(tmp_path, env, tiny_ferplus):
    """One papermill run of the training notebook with `-p config_file` runs every stage of a multi-stage recipe (the notebook's
    own examples run too, so this is one run, not two); a rerun through the same door, run_recipe, skips every stage."""
    from conftest import BIN
    import yaml
    recipe = tmp_path/'two.yaml'
    recipe.write_text(yaml.safe_dump(dict(run='two', model='mobile_fer', batch_size=32, label_mode='majority', progress='none', threads=1,
                                          bn_recal=64, ema=0.9, stages=[dict(name='first', ship=dict(weights='ema')),
                                          dict(name='second', init='first', lr=0.01), dict(name='pair', combine=['first', 'second'])])))
    r = subprocess.run([str(BIN/'papermill'), 'nbs/02_train.ipynb', str(tmp_path/'run.ipynb'), '-k', 'python3', '--log-output',
                        '-p', 'config_file', str(recipe), '-p', 'epochs', '1', '-p', 'train_limit', '64', '-p', 'valid_limit', '32',
                        '-p', 'out_dir', str(tmp_path/'ck'), '-p', 'log_dir', str(tmp_path/'logs')],
                       cwd=ROOT, env=dict(env, FERPLUS_DIR=str(tiny_ferplus)), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    out = r.stdout + r.stderr
    assert 'stage first: trained' in out and 'stage second: trained' in out and 'stage pair: combined' in out, out[-2000:]
    from fer_nb.model import load_checkpoint, read_checkpoint
    assert read_checkpoint(tmp_path/'ck'/'two'/'second'/'last.pt')['config']['init'] == str(tmp_path/'ck'/'two'/'first.pt')
    m, _ = load_checkpoint(tmp_path/'ck'/'two'/'pair.pt')
    assert m(torch.zeros(2, 1, 48, 48, dtype=torch.uint8)).shape == (2, 7)
    from fer_nb.stages import run_recipe
    again = run_recipe(recipe, epochs=1, train_limit=64, valid_limit=32, out_dir=str(tmp_path/'ck'), log_dir=str(tmp_path/'logs'))
    assert again['product'] == str(tmp_path/'ck'/'two'/'pair.pt') and [s['status'] for s in again['stages']] == ['skipped']*3
