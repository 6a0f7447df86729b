#!/usr/bin/env bash
# Lint, format check and type check.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh" test dev examples
cd "$root"
.venv/bin/ruff check radas_flows tests examples bench deployments
.venv/bin/ruff format --check radas_flows tests examples bench deployments
.venv/bin/mypy
