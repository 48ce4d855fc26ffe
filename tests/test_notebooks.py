"Every notebook's inline tests (what `nbdev_test` runs), one pytest case per notebook."
from pathlib import Path
import pytest
from nbdev.config import get_config
from nbdev.test import test_nb as run_notebook_tests

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT/'nbs').glob('*.ipynb'))

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook(nb, monkeypatch):
    monkeypatch.chdir(ROOT)
    flags = get_config().tst_flags.split()
    ok, secs = run_notebook_tests(nb, skip_flags=flags, showerr=True)
    assert ok, f"{nb.name} failed (see the traceback above)"
