#!/usr/bin/env bash
# The main job: install what is missing, then run the two-moons sweep on a local Ray with an
# ephemeral Prefect API. Prints where the figure and the CSV are.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "$root/scripts/bootstrap.sh" examples
cd "$root/examples/two_moons"
exec "$root/.venv/bin/python" -u run_experiment.py "$@"
