#!/usr/bin/env bash
# Rewrite envs/requirements.lock from the current .venv (after deliberately changing a version there).
set -euo pipefail
cd "$(dirname "$0")/.."
{
  echo "# Exact versions of every package tunemake installs (pip freeze of a working .venv; regenerate with scripts/lock.sh)."
  echo "# Installed with --no-deps, so nothing outside this list is resolved; llama-cpp-python is built from source."
  echo "--no-binary llama-cpp-python"
  # Wheels installed from a file become name==version; torch without "+cpu": the same pin takes the CPU wheel here and the CUDA build on GPU nodes.
  .venv/bin/pip freeze --exclude-editable | grep -v "^tunemake" \
    | sed -E 's/^([A-Za-z0-9_.-]+) @ file:.*\/[A-Za-z0-9_.]+-([0-9][A-Za-z0-9.]*)-(py3|cp3).*/\1==\2/; s/^(torch==[0-9.]+)\+cpu$/\1/' \
    | sort -f
} > envs/requirements.lock
