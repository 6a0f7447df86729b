#!/usr/bin/env bash
# Lint, format check and type check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh" test dev examples
cd "$root"
paths=()
for p in radas_flows tests examples bench deployments scripts conftest.py; do [ -e "$p" ] && paths+=("$p"); done
.venv/bin/ruff check "${paths[@]}"
.venv/bin/ruff format --check "${paths[@]}"
.venv/bin/mypy
