# `make run` and `make test` each build .venv when it is missing, then do their job.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
# torch/torchvision first: avalanche-lib pins neither and would otherwise pull another torch.
TORCH   := torch==2.14.1 torchvision==0.29.1
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE=disabled
export PYTHONUNBUFFERED=1

.PHONY: run test bench clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(VENV)/.installed: $(BIN)/python pyproject.toml
	$(BIN)/pip install -q $(TORCH) || $(BIN)/pip install -q "torch>=2.4" "torchvision>=0.19"
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

run: $(VENV)/.installed
	$(BIN)/clu run

test: $(VENV)/.installed
	$(BIN)/python -m pytest -q -n 2 --durations=15

bench: $(VENV)/.installed
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) runs/*/ .pytest_cache build dist
