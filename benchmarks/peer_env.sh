#!/usr/bin/env bash
# Create .peer_venv: the PEER (cellpose 3.1.1.3) in its own virtual environment.
#
# For benchmarks and golden-data scripts only. cellpose 3.1.1.3 pins numpy<2.1,
# which conflicts with the project's own environment, hence a separate venv.
# torch must be pinned exactly: only then does pip pick the local CPU wheel
# (unpinned, it pulls a multi-GB CUDA build).
#
# Usage: bash benchmarks/peer_env.sh [PYTHON]      (default: python3;
#        PEER_VENV=DIR overrides the location, default .peer_venv in the repo root)
# Idempotent: re-running on a complete .peer_venv only checks the imports.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${PEER_VENV:-$ROOT/.peer_venv}"
PYTHON="${1:-python3}"
TORCH_PIN="torch==2.13.0"
CELLPOSE_PIN="cellpose==3.1.1.3"

start=$(date +%s)
if [ ! -x "$VENV/bin/python" ]; then
    echo "peer_env: creating $VENV with $("$PYTHON" --version 2>&1)"
    "$PYTHON" -m venv "$VENV"
fi
# pip warns once per package about index folders this machine lacks: drop that noise only.
pip_install() {
    "$VENV/bin/python" -m pip install --quiet "$@" 2>&1 \
        | { grep -v "is ignored: it is neither a file nor a directory" || true; }
}
if ! "$VENV/bin/python" -c "import cellpose, torch" >/dev/null 2>&1; then
    pip_install --upgrade pip
    # torch first, pinned, so that cellpose's own torch requirement is already met.
    pip_install "$TORCH_PIN"
    pip_install "$TORCH_PIN" "$CELLPOSE_PIN"
fi
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
import numpy, torch
import cellpose.resnet_torch  # noqa: F401  (the network module the golden scripts need)
print(f"peer_env: cellpose {md.version('cellpose')}, torch {torch.__version__}, numpy {numpy.__version__}")
PY
echo "peer_env: ready in $(( $(date +%s) - start )) s: $VENV/bin/python"
