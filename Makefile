# Two commands do everything: `make demo` (setup + main job) and `make test` (setup + tests).
# Both are idempotent: a second run skips what is already installed.
PY := .venv/bin/python

.PHONY: setup demo test test-fast lint bench validate clean

setup:
	./scripts/setup.sh

demo: setup
	$(PY) experiments/noise_sweep.py --device reram

test: setup
	$(PY) -m pytest -q --durations=25

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

# ruff (the whole tree) and mypy (wxy_hw/), both configured in pyproject.toml; CI runs it after `make test`
lint: setup
	$(PY) -m ruff check .
	$(PY) -m mypy

bench: setup
	$(PY) benchmarks/run.py

# The cost model against references nobody here wrote: the real DNN+NeuroSim V1.3 (downloaded and built into the
# git-ignored validation/.neurosim/ on first use; CC BY-NC, never part of wxy_hw) on a grid of chips, part by part
# (validation/results/), then the published NeuroSim points and measured macros, tuning vs held out. ~5 min.
validate: setup
	$(PY) validation/neurosim_grid.py
	$(PY) experiments/chip_study.py --validate --out validation/results/chip_validation --overwrite

# What the project writes: caches of pytest, ruff, mypy and Python (removed), then study runs (runs/, the default
# --out) and the trained default models (runs/cache): scripts/clean_runs.py lists them and asks (default: keep),
# never removes a folder a running process writes, and without a terminal removes none. The environment (.venv)
# stays: `rm -rf .venv`.
clean:
	rm -rf .pytest_cache .ruff_cache .mypy_cache build wxy_hw.egg-info
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	@if [ -x $(PY) ]; then $(PY) scripts/clean_runs.py; \
	elif [ -d runs ]; then echo "runs/ kept: no .venv to check which runs are in use (make setup, then make clean)"; fi
