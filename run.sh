#!/usr/bin/env bash
# rewardax in two commands:
#   ./run.sh          set up .venv (first run or changed requirements) and run the main job
#   ./run.sh tests    set up .venv with the test requirements and run the test suite
# Extra arguments go to the main job (e.g. ./run.sh --preset smoke, ./run.sh --num-envs 64).
set -euo pipefail
cd "$(dirname "$0")"

mode=main
if [ "${1:-}" = "tests" ]; then mode=tests; shift; fi
requirements=requirements.txt
[ "$mode" = tests ] && requirements=requirements-dev.txt

if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# Reinstall only when the requirements or the package metadata change.
stamp=".venv/.installed-$(cat "$requirements" requirements.txt pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  extra=()
  # Accelerator builds of the same jax release (the pins in requirements.txt cover the CPU).
  if command -v nvidia-smi >/dev/null 2>&1; then extra=("jax[cuda12]==0.10.2");
  elif ls /dev/accel* >/dev/null 2>&1 || [ -n "${TPU_NAME:-}" ]; then extra=("jax[tpu]==0.10.2"); fi
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r "$requirements" -e . "${extra[@]}"
  touch "$stamp"
fi

if [ "$mode" = tests ]; then
  exec .venv/bin/python -m pytest -q "$@"
fi
# The flagship run, with the preset for this machine (see experiments/train.py). Without the hub or cached
# weights it falls back, with a banner, to the offline preset (a humanoid learns to kneel from its ground truth).
# Compiled programs are kept in .jax_cache/: a second run of the same shapes skips minutes of compiling.
export JAX_COMPILATION_CACHE_DIR="${JAX_COMPILATION_CACHE_DIR:-$PWD/.jax_cache}"
exec .venv/bin/python experiments/humanoid_splits.py "$@"
