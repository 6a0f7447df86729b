#!/usr/bin/env bash
# The test suite: install what is missing, then run pytest on real components
# (local Ray, a loopback `ray start --head`, a Prefect test API, aiosmtpd, moto's S3 server).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh" test dev examples wandb swanlab
cd "$root"
# A native crash (also one while the interpreter exits) prints every thread's Python stack.
export PYTHONFAULTHANDLER=1
exec "$root/.venv/bin/python" -m pytest "$@"
