#!/usr/bin/env bash
# The test suite: install what is missing, then run pytest on real components
# (local Ray, a loopback `ray start --head`, a Prefect test API, aiosmtpd, moto's S3 server).
#
#   bash scripts/test.sh             the whole suite: two pytest-xdist workers (whole files
#                                    each, long files first), then the `serial` tests alone
#   bash scripts/test.sh ARGS...     pytest with ARGS, in one process (e.g. a file, -k NAME)
#
# RADAS_TEST_WORKERS sets the number of workers of the whole-suite run (default 2).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh" test dev examples wandb swanlab
cd "$root"
# A native crash (also one while the interpreter exits) prints every thread's Python stack.
export PYTHONFAULTHANDLER=1
python="$root/.venv/bin/python"
if [[ $# -gt 0 ]]; then
  exec "$python" -m pytest "$@"
fi
status=0
# --no-loadscope-reorder: files go out in the order conftest.py sorts them (long files first);
# xdist's own reordering, by number of tests, would start the one-test soak last.
"$python" -m pytest -n "${RADAS_TEST_WORKERS:-2}" --dist loadfile --no-loadscope-reorder \
  -m "not serial" || status=$?
"$python" -m pytest -m serial || status=$((status ? status : $?))
exit "$status"
