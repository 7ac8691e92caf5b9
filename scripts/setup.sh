#!/usr/bin/env bash
# One-shot, idempotent environment setup for wxy_hw.
#   - system packages (OpenBLAS for aihwkit's build, Debian's Fashion-MNIST)
#   - a virtual environment in .venv
#   - torch==2.13.0, aihwkit 1.2.0 built from source, brevitas, the package itself
# A second run only checks what is there and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
TORCH_VERSION=2.13.0  # = the torch pin in pyproject.toml (tests/test_packaging.py checks they agree)
AIHWKIT_VERSION=1.2.0
STAMP="$VENV/.wxy_hw_setup_done"

say() { printf '\033[1m[setup]\033[0m %s\n' "$*"; }

# --- 1. system packages -------------------------------------------------------
need_apt=()
dpkg -s libopenblas-dev >/dev/null 2>&1 || need_apt+=(libopenblas-dev)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ] && [ -z "${WXY_SKIP_APT:-}" ] && ! command -v apt-get >/dev/null 2>&1; then
  say "apt-get is not available here, so these system packages cannot be installed: ${need_apt[*]}." >&2
  say "Install by hand: OpenBLAS with headers (Debian libopenblas-dev, Fedora openblas-devel, macOS 'brew install openblas')" >&2
  say "and the Fashion-MNIST files (the four *-ubyte.gz in a directory named by \$WXY_DATA); then rerun with WXY_SKIP_APT=1." >&2
  exit 1
fi
if [ ${#need_apt[@]} -gt 0 ] && [ -z "${WXY_SKIP_APT:-}" ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  say "apt-get install ${need_apt[*]}"
  $SUDO apt-get install -y "${need_apt[@]}" || {
    $SUDO apt-get update && $SUDO apt-get install -y "${need_apt[@]}"; }
fi

# --- 2. virtual environment ---------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PIP=("$VENV/bin/python" -m pip --disable-pip-version-check)
# aihwkit's build calls tools (cmake, ninja, stubgen) by name: they must be on PATH.
export PATH="$PWD/$VENV/bin:$PATH"

# pip ends some installs with a red "ERROR: pip's dependency resolver ..." block listing what aihwkit and
# torchattacks declare (torchvision, ...). Those are installed --no-deps on purpose (torchvision would replace the
# pinned torch), so the block is expected: it is replaced by one line saying so; everything else passes through.
expected_conflicts() {
  awk -v note="$(printf '\033[1m[setup]\033[0m pip lists what aihwkit / torchattacks declare but were installed without (torchvision ...): expected, harmless (see scripts/setup.sh)')" '
    /^ERROR: pip.s dependency resolver does not currently take into account/ { print note; skip = 1; next }
    skip && / requires | which is incompatible/ { next }
    { skip = 0; print; fflush() }'
}

# The package is installed editable through a path entry (setuptools "compat" mode), not an import hook: a
# path entry is searched before any namespace package, so `import wxy_hw` from the folder that holds the clone
# (itself named wxy_hw, with no __init__.py) still finds the package. Bump SETUP_LAYOUT when the install changes
# (3: the dev extra, ruff and mypy for `make lint`).
SETUP_LAYOUT=3

# Fast path: everything installed by a previous run and the package metadata unchanged.
if [ -f "$STAMP" ] && [ "$STAMP" -nt pyproject.toml ] && [ "$(cat "$STAMP")" = "$SETUP_LAYOUT" ] \
   && "$VENV/bin/python" -c "import torch, aihwkit, brevitas, torchattacks, ray, ruff, mypy, wxy_hw" 2>/dev/null; then
  say "environment ready ($VENV)"
  exit 0
fi

# --- 3. torch (pinned; CPU build on CPU-only machines, CUDA build where pip picks it) ---
if ! "$VENV/bin/python" -c "import torch,sys; sys.exit(torch.__version__.split('+')[0] != '$TORCH_VERSION')" 2>/dev/null; then
  say "installing torch==$TORCH_VERSION"
  # TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu picks a CPU-only build where pip would take CUDA's.
  "${PIP[@]}" install "torch==$TORCH_VERSION" ${TORCH_INDEX_URL:+--index-url "$TORCH_INDEX_URL"}
fi

# --- 4. aihwkit from source ------------------------------------------------------
# aihwkit declares torchvision as a dependency; any torchvision drags in another torch
# and breaks aihwkit's compiled ABI, so it is installed with --no-deps plus the two
# runtime dependencies its analog layers actually import.
if ! "$VENV/bin/python" -c "import aihwkit.simulator.rpu_base" 2>/dev/null; then
  say "building aihwkit==$AIHWKIT_VERSION from source (about 4 minutes the first time; pip caches the wheel)"
  "${PIP[@]}" install scikit-build pybind11 ninja cmake setuptools wheel mypy
  "${PIP[@]}" install --no-build-isolation --no-deps "aihwkit==$AIHWKIT_VERSION"
  "${PIP[@]}" install requests protobuf 2>&1 | expected_conflicts
fi

# --- 4b. torchattacks: the same torchvision trap, and it imports none of it -----------------
if ! "$VENV/bin/python" -c "import torchattacks" 2>/dev/null; then
  say "installing torchattacks (--no-deps)"
  "${PIP[@]}" install --no-deps "torchattacks==3.5.1" 2>&1 | expected_conflicts
fi

# --- 5. the package and its other dependencies ---------------------------------------
# Install the remaining requirements explicitly (read from pyproject.toml) and the
# package itself with --no-deps, so pip never resolves aihwkit's dependency list.
mapfile -t deps < <("$VENV/bin/python" scripts/list_deps.py --exclude torch aihwkit torchattacks --extras test export parallel dev)
say "installing dependencies: ${deps[*]}"
"${PIP[@]}" install "${deps[@]}" "torch==$TORCH_VERSION" 2>&1 | expected_conflicts
"${PIP[@]}" install --no-deps --no-build-isolation --config-settings editable_mode=compat -e . 2>&1 | expected_conflicts

"$VENV/bin/python" -c "import torch, aihwkit, brevitas, wxy_hw; print('torch', torch.__version__, '| aihwkit', aihwkit.__version__, '| brevitas', brevitas.__version__)"
echo "$SETUP_LAYOUT" > "$STAMP"
say "environment ready ($VENV)"
