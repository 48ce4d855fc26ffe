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

def _defined_names(src):
    "Names a cell binds with def, class or import (the ways a later cell can silently replace a parameter)."
    import ast
    try: tree = ast.parse('\n'.join(l for l in src.splitlines() if not l.lstrip().startswith(('%', '!'))))
    except SyntaxError: return set()
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)): out.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            out |= {(a.asname or a.name).split('.')[0] for a in node.names if a.name != '*'}
    return out

@pytest.mark.parametrize('nb', NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell(nb):
    "Every numbered notebook has a papermill parameters cell, and no parameter shares its name with a function, class or import of the notebook (which would silently replace it)."
    import ast, nbformat
    cells = nbformat.read(str(nb), as_version=4).cells
    params = [c for c in cells if 'parameters' in c.metadata.get('tags', [])]
    if not params:
        assert not nb.name[:2].isdigit(), f"{nb.name} has no cell tagged 'parameters' (every numbered notebook re-runs under papermill)"
        pytest.skip(f'{nb.name} is not a numbered notebook')
    names = {t.id for n in ast.parse(params[0].source).body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    clashes = {n for c in cells if c.cell_type == 'code' and c is not params[0] for n in _defined_names(c.source) & names}
    assert not clashes, f"{nb.name}: parameter(s) {sorted(clashes)} are redefined by a def/class/import"

NUMBERED = [nb for nb in NOTEBOOKS if nb.name[:2].isdigit()]

@pytest.mark.parametrize('nb', NUMBERED, ids=lambda p: p.stem)
def test_papermill_reads_every_parameter(nb):
    "`papermill --help-notebook` lists every name the parameters cell assigns (a line it cannot parse drops the rest silently)."
    import ast, nbformat, papermill
    cell, = [c for c in nbformat.read(str(nb), as_version=4).cells if 'parameters' in c.metadata.get('tags', [])]
    names = [t.id for n in ast.parse(cell.source).body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)]
    assert names, f"{nb.name}: the parameters cell assigns nothing"
    assert list(papermill.inspect_notebook(str(nb))) == names
