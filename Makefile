# `make run` and `make test` each build .venv when it is missing, then do their job.
PY      ?= python3.11
VENV    := .venv
BIN     := $(VENV)/bin
# torch/torchvision first: avalanche-lib pins neither and would otherwise pull another torch.
TORCH   := torch==2.14.1 torchvision==0.29.1
export RAY_USAGE_STATS_ENABLED=0
export RAY_AUTH_MODE=disabled
export PYTHONUNBUFFERED=1

.PHONY: run test bench results readme tune clean

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
	$(BIN)/python -m pytest -q -n 2 --dist loadgroup --durations=15

bench: $(VENV)/.installed
	$(BIN)/python bench/run_all.py

# The README's result tables (results/tables.toml): run or resume every sweep, write results/<table>/, regenerate
# the README's tables. RESULTS_EXECUTOR=serial for no Ray; ONLY=digits-class,... for some tables.
results: $(VENV)/.installed
	$(BIN)/python results/build.py $(if $(ONLY),--only $(ONLY))

# The README's tables and results/*/table.{md,tex} from the committed result files; runs nothing.
readme: $(VENV)/.installed
	$(BIN)/python results/build.py --readme-only

# `clu tune` for every compared method (DESIGN §13): the same budget (16 configurations), tuning seeds 100-102
# (disjoint from the reported 0-9), the digits scenarios, the validation split; writes strategies/<name>.toml.
TUNED          ?= ugclu er-ft er-ga er-rl er-salun er-sfron
TUNE_SCENARIOS ?= digits-class digits-cross-task digits-random-sample
TUNE_EXECUTOR  ?= ray
# ugclu is also tuned on an attached stream, where its unified step acts; the baselines serve an attached
# request as a detached one (the request, then the task), so for them it would repeat digits-class's kinds.
TUNE_ATTACHED  ?= digits-attached
tune: $(VENV)/.installed
	for s in $(TUNED); do \
	  $(BIN)/clu tune strategies/spaces/$$s.toml --scenarios $(TUNE_SCENARIOS) $$(test $$s = ugclu && echo \
	    $(TUNE_ATTACHED)) --seeds 100-102 --budget 16 \
	    --executor $(TUNE_EXECUTOR) --out runs/tune/$$s $$(test -d runs/tune/$$s && echo --resume) \
	    --preset strategies/$$s.toml || exit 1; \
	done

clean:
	rm -rf $(VENV) runs/*/ .pytest_cache build dist
