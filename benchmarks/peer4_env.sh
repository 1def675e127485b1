#!/usr/bin/env bash
# Create .peer4_venv: the PEER for Cellpose 4 (cellpose 4.2.1.1, Cellpose-SAM) in its own venv.
#
# For the golden-data script and the benchmark of the transformer models only
# (benchmarks/peer4_golden.py, benchmarks/bench_cpsam.py). Cellpose 4 refuses Cellpose 3
# checkpoints and pins other versions than the project, hence a venv of its own, next to
# .peer_venv (Cellpose 3).
#
# torchvision: cellpose 4.2.1.1 requires it and pip installs torchvision 0.28.0 with
# torch 2.13.0, whose compiled ops fail to load ("operator torchvision::nms does not exist").
# Cellpose 4's network (vit.CPSAM over segment_anything's image encoder) and its
# eval path do not use torchvision; only modules imported at package import time touch it.
# The scripts therefore put benchmarks/peer4_stub first on sys.path: a `torchvision` package
# with no ops, so that `import cellpose` succeeds; anything that really needs torchvision
# fails loudly there (AttributeError/ImportError), never silently.
#
# Usage: bash benchmarks/peer4_env.sh [PYTHON]    (default: python3;
#        PEER4_VENV=DIR overrides the location, default .peer4_venv in the repo root)
# Idempotent: re-running on a complete .peer4_venv only checks the imports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEER4_VENV:-$ROOT/.peer4_venv}"
PYTHON="${1:-python3}"
TORCH_PIN="torch==2.13.0"
CELLPOSE_PIN="cellpose==4.2.1.1"
STUB="$ROOT/benchmarks/peer4_stub"

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    echo "peer4_env: creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
pip_install() {
    "$VENV/bin/python" -m pip install --quiet "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
if ! PYTHONPATH="$STUB" "$VENV/bin/python" -c "import cellpose.vit, torch" >/dev/null 2>&1; then
    pip_install --upgrade pip
    # torch first, pinned, so that cellpose's own torch requirement is already met.
    pip_install "$TORCH_PIN"
    pip_install "$TORCH_PIN" "$CELLPOSE_PIN"
fi
PYTHONPATH="$STUB" "$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import numpy, torch
import cellpose.vit  # noqa: F401  (the network module the golden and bench scripts need)
print(f"peer4_env: cellpose {md.version('cellpose')}, torch {torch.__version__}, numpy {numpy.__version__}")
PY
echo "peer4_env: ready in $(( $(date +%s) - start )) s: $VENV/bin/python"
