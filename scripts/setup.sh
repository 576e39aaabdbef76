#!/usr/bin/env bash
# Installs what the project needs beyond Rust into project-local, git-ignored folders:
#   .venv/      Python for the tests' reference implementation and S3 server (moto)
#   .libtorch   libtorch for the LSTM-CNN, from PyPI's torch wheel (scripts/libtorch.sh)
# Idempotent and quick when already done; both README commands call it.
set -euo pipefail
cd "$(dirname "$0")/.."

venv=.venv
stamp="$venv/.installed-$(sha256sum scripts/requirements.txt | cut -c1-16)"
if [ ! -f "$stamp" ]; then
    echo "setup: creating $venv with the test dependencies (once)" >&2
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --upgrade pip
    "$venv/bin/pip" install --quiet -r scripts/requirements.txt
    rm -f "$venv"/.installed-*
    touch "$stamp"
fi

# The CPU libtorch; on a GPU machine run `scripts/libtorch.sh --cuda` once instead.
scripts/libtorch.sh
