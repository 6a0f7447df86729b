#!/usr/bin/env bash
# Installs what is missing: uv (if absent), then the locked environment in .venv.
# Usage: source scripts/bootstrap.sh [uv sync extras...]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
if ! command -v uv >/dev/null 2>&1; then
  if [ ! -x "$HOME/.local/bin/uv" ]; then
    python3 -m pip install --quiet --user uv 2>/dev/null || python3 -m pip install --quiet uv
  fi
  export PATH="$HOME/.local/bin:$PATH"
fi
extras=()
for e in "$@"; do extras+=(--extra "$e"); done
uv sync --frozen --inexact --compile-bytecode --quiet "${extras[@]}"
export PREFECT_SERVER_ANALYTICS_ENABLED="${PREFECT_SERVER_ANALYTICS_ENABLED:-false}"
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="${PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS:-120}"
export RAY_USAGE_STATS_ENABLED="${RAY_USAGE_STATS_ENABLED:-0}"
