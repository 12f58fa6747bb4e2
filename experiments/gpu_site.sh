#!/usr/bin/env bash
# Pack what `prunesched bench gpu` needs beyond a GPU machine's own torch, for a machine with no internet.
#
# usage: experiments/gpu_site.sh OUT.tar.xz [PYTHON_VERSION] [--slim]
#
# A GPU image usually has torch, torchvision, transformers, numpy, scipy, matplotlib, click, rich, filelock
# and the like; it lacks diffusers, Ray, pymoo, Optuna, SQLAlchemy, torch-fidelity and the peers of
# `bench step` (tomesd, DeepCache). This installs those at the versions of constraints.txt, for the given
# Python (default 3.12) on manylinux x86-64, into one folder and packs it with xz. On the GPU machine:
#
#   mkdir -p /tmp/site && tar -xJf OUT.tar.xz -C /tmp/site
#   python3 -m pip install --no-deps --no-index --no-build-isolation --target /tmp/prunesched .   # in a checkout of prunesched
#   PYTHONPATH=/tmp/prunesched:/tmp/site HF_HUB_OFFLINE=1 python3 -m prunesched bench gpu -o bench_gpu.json
#
# --slim drops the parts of Ray a local instance never loads (Java jars, the dashboard's web client, RLlib,
# Data, Serve, Train, Tune, the LLM library) and strips the symbols of its binaries, for transfers with a
# size cap: 35 MB (Ray's wheel alone is 79 MB). It is what docs/benchmarks.md's GPU run used.
set -euo pipefail
out=${1:?usage: experiments/gpu_site.sh OUT.tar.xz [PYTHON_VERSION] [--slim]}
python_version=${2:-3.12}
slim=${3:-}
here=$(cd "$(dirname "$0")/.." && pwd)
packages=(
    diffusers importlib_metadata                                              # diffusers
    ray jsonschema jsonschema-specifications referencing rpds-py              # Ray
    pymoo moocore cffi pycparser platformdirs autograd cma alive-progress about-time graphemeu Deprecated
    optuna alembic Mako colorlog SQLAlchemy                                   # Optuna and the search database
    torch_fidelity tomesd DeepCache
)
pins=()
for name in "${packages[@]}"; do
    pin=$(grep -i -m1 "^${name//[-_]/[-_]}==" "$here/constraints.txt") || { echo "not in constraints.txt: $name" >&2; exit 1; }
    pins+=("$pin")
done
site=$(mktemp -d)
trap 'rm -rf "$site"' EXIT
python3 -m pip install --quiet --no-deps --no-compile --only-binary=:all: --target "$site" \
    --python-version "$python_version" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    "${pins[@]}"
rm -rf "$site/bin"  # console scripts name this machine's Python
if [[ $slim == --slim ]]; then
    rm -rf "$site"/ray/{jars,dashboard/client,rllib,data,serve,train,tune,llm}
    find "$site/ray" -name '*.map' -delete
    strip --strip-unneeded "$site/ray/_raylet.so" "$site/ray/core/src/ray/gcs/gcs_server" "$site/ray/core/src/ray/raylet/raylet"
fi
tar -cJf "$out" -C "$site" .
echo "wrote $out ($(du -h "$out" | cut -f1)) for Python $python_version"
