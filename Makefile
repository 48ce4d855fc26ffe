# Two commands for a fresh clone (only Python 3.11 needed):
#   make run    set everything up, then run the main job
#   make test   set everything up, then run every test (notebooks, CLI, browser, DDP)
PY ?= python3.11
VENV ?= .venv
BIN = $(VENV)/bin
export FERPLUS_DIR ?= $(CURDIR)/data/raw/ferplus

.PHONY: setup run test browser clean
setup: $(VENV)/.installed

$(VENV)/.installed: settings.ini setup.py
	@command -v $(PY) >/dev/null || { echo "need $(PY) (set PY=python3 to use another)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	$(BIN)/pip install -q --no-deps "facenet-pytorch==2.6.0"
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $@

# Chromium for the browser test (Debian's package; the test skips with a reason where it cannot be installed).
browser:
	@command -v chromium >/dev/null || (apt-get install -y -q chromium >/dev/null 2>&1 || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1)) || echo "chromium could not be installed: the browser test will be skipped"

run: setup
	$(BIN)/fer-nb predict samples/astronaut.png

test: setup browser
	$(BIN)/python -m pytest -q -rs -n 2 tests

clean:
	rm -rf $(VENV) data/processed/*.npz checkpoints logs runs
