# Two commands do everything: `make demo` (setup + main job) and `make test` (setup + tests).
# Both are idempotent: a second run skips what is already installed.
PY := .venv/bin/python

.PHONY: setup demo test test-fast bench clean

setup:
	./scripts/setup.sh

demo: setup
	$(PY) experiments/noise_sweep.py --device reram

test: setup
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow"

bench: setup
	$(PY) benchmarks/run.py

clean:
	rm -rf runs/demo .pytest_cache
