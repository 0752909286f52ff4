#!/usr/bin/env bash
# Install edgenas into ./.venv on a fresh Debian machine (Python 3.10 or newer; the CPU
# PyTorch wheel on local disk is for 3.11; no internet but the package registries): that
# wheel (never the multi-GB CUDA build), the package with its dev tools, and Fashion-MNIST
# from Debian when apt is there.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ ! -d /usr/share/datasets/fashion-mnist ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "setup: installing Debian's dataset-fashion-mnist"
  apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1; } \
    || echo "setup: warning: could not install Fashion-MNIST; commands can use --dataset digits instead"
fi

python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
  || { echo "setup: edgenas needs Python 3.10 or newer; python3 here is $(python3 -V 2>&1)" >&2; exit 1; }
[ -x .venv/bin/python ] || python3 -m venv .venv
quiet_pip() {  # pip's notes about this machine's local package folders are noise, not errors
  .venv/bin/python -m pip install -q --disable-pip-version-check "$@" 2> >(grep -v "^WARNING: Location" >&2)
}
echo "setup: installing the CPU build of PyTorch 2.13.0 and edgenas into .venv"
quiet_pip torch==2.13.0
quiet_pip -e '.[dev]' torch==2.13.0  # pinned again: edgenas asks for torch>=2.5, and this keeps the CPU wheel
echo "setup: done ($(.venv/bin/python -c 'import torch; print("torch", torch.__version__)'))"
