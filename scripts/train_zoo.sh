#!/bin/sh
# Retrain the model zoo (zoo/) from scratch: scripts/train_zoo.py with the given flags (--help lists them).
set -e
cd "$(dirname "$0")/.."
exec .venv/bin/python scripts/train_zoo.py "$@"
