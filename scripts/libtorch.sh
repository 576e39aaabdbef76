#!/usr/bin/env bash
# Installs libtorch 2.13.0 (what tch 0.26 links against) from PyPI's torch wheel into the
# project's git-ignored .venv, and points .libtorch at it; .cargo/config.toml and build.rs take
# it from there, so no shell variables are needed.
#   scripts/libtorch.sh          CPU set (~1.2 GB): torch without its CUDA wheels
#   scripts/libtorch.sh --cuda   full install (~4.7 GB) for a machine with an NVIDIA GPU
# Idempotent and quick when already done; scripts/setup.sh calls it.
set -euo pipefail
cd "$(dirname "$0")/.."

torch_version=2.13.0
flavour=cpu
case "${1:-}" in
    --cuda) flavour=cuda ;;
    "") ;;
    *) echo "usage: scripts/libtorch.sh [--cuda]" >&2; exit 2 ;;
esac

venv=.venv
stamp="$venv/.libtorch-$torch_version-$flavour"
# A CUDA install also serves CPU use.
if [ -f "$stamp" ] || { [ "$flavour" = cpu ] && [ -f "$venv/.libtorch-$torch_version-cuda" ]; }; then
    exit 0
fi
[ -x "$venv/bin/pip" ] || python3 -m venv "$venv"
echo "setup: installing libtorch $torch_version ($flavour) into $venv (once; ~1 min)" >&2
if [ "$flavour" = cuda ]; then
    "$venv/bin/pip" install --quiet "torch==$torch_version"
else
    # libtorch_cuda-free use still loads libcudart/libcupti stubs through libtorch's deps;
    # the rest of the CUDA wheels (3.5 GB) are only needed on a GPU.
    "$venv/bin/pip" install --quiet --no-deps "torch==$torch_version" \
        nvidia-cuda-runtime==13.0.96 nvidia-cuda-cupti==13.0.85
    # What `import torch` needs, for the PyTorch benchmark beside ours.
    "$venv/bin/pip" install --quiet --no-warn-conflicts filelock typing-extensions sympy networkx jinja2 fsspec
fi
site=$("$venv/bin/python" -c 'import os, sysconfig; print(os.path.relpath(sysconfig.get_paths()["purelib"]))')
ln -sfn "$site/torch" .libtorch
rm -f "$venv"/.libtorch-*
touch "$stamp"
