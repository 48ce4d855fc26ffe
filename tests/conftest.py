import os, sys
from pathlib import Path
import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent

@pytest.fixture(scope='session')
def tiny_ferplus(tmp_path_factory):
    "A synthetic FERPlus tree (train/valid/test) with learnable classes."
    from fer_nb.synthetic import make_tiny_ferplus
    return make_tiny_ferplus(tmp_path_factory.mktemp('tiny_ferplus'), n=192)

@pytest.fixture
def env(tmp_path):
    "Environment for subprocesses: caches in tmp, papermill mode on."
    e = dict(os.environ, FER_NB_CACHE=str(tmp_path/'cache'), FER_NB_PAPERMILL='1', PYTHONWARNINGS='ignore')
    e.pop('IN_TEST', None)
    return e
