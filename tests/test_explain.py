"Grad-CAM maps (fer_nb.explain) with an untrained model saved as a checkpoint, and with the shipped model when present."
import numpy as np
import pytest
import torch

from fer_nb.data import DataError, load_image
from fer_nb.predict import Predictor, sample_path
from fer_nb.explain import explain_faces, gradcam, overlay
from fer_nb.model import create_model, save_checkpoint
from conftest import real_checkpoint

@pytest.fixture(scope='module')
def untrained(tmp_path_factory):
    "A Predictor on an untrained resnet_fer checkpoint (PyTorch runtime)."
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ck')/'untrained.pt'
    save_checkpoint(path, create_model('resnet_fer'))
    return Predictor.load(path, runtime='torch', device='cpu')

def check_maps(maps, n=1, side=48):
    assert maps.shape == (n, side, side) and maps.dtype == np.float32   # one map per face, at the side the model sees
    assert maps.min() >= 0 and maps.max() <= 1

def test_untrained_map_on_sample_face(untrained):
    faces, maps = explain_faces(untrained, sample_path())
    assert len(faces) == 1
    check_maps(maps)
    assert maps.std() > 0.01, 'the map is constant on the sample face'
    assert maps.max() == pytest.approx(1.0)

def test_gradcam_targets(untrained):
    crops = np.stack([f.crop for f in untrained.find(load_image(sample_path()))])
    check_maps(gradcam(untrained.model, crops, target='anger'))
    check_maps(gradcam(untrained.model, np.concatenate([crops, crops]), target=[0, 3]), n=2)
    with pytest.raises(DataError, match='unknown class'): gradcam(untrained.model, crops, target='joy')
    with pytest.raises(DataError, match='N×S×S'): gradcam(untrained.model, crops[0])

def test_overlay_has_photo_size(untrained):
    faces, maps = explain_faces(untrained, sample_path())
    photo = load_image(sample_path())
    assert overlay(sample_path(), faces, maps).size == photo.size
    assert overlay(sample_path(), faces, maps, max_side=200).size == (200, 200)
    assert overlay(sample_path(), faces, maps, labels=False).size == photo.size

def test_no_face_and_garbage(untrained):
    from PIL import Image
    faces, maps = explain_faces(untrained, Image.new('RGB', (320, 240), (90, 120, 150)))
    assert faces == [] and maps.shape == (0, 48, 48)
    with pytest.raises(DataError): explain_faces(untrained, b'not an image')

@pytest.mark.skipif(real_checkpoint() is None, reason='no shipped model (models/DEFAULT) and $FER_NB_CHECKPOINT unset')
def test_shipped_model_looks_at_the_face():
    p = Predictor.load(prior='uniform')
    faces, maps = explain_faces(p, sample_path())
    check_maps(maps, side=p.input_size)
    assert faces[0].label == p.predict(sample_path())[0].label
    assert maps.std() > 0.05
