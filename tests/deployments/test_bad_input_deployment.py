"""Bad JSON parameters through real deployment runs (a subset of tests/test_bad_input_table.py).

Schema errors are refused by the server when the run is created (no flow run); the rest fail
in the flow run before anything is submitted. Either way nothing is stored and no lock is held.
"""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.deployments.conftest import Server, wait_final
from tests.test_bad_input_table import CASES, TRAINABLE, USER

pytestmark = pytest.mark.slow

#: Cases the server's parameter schema refuses, with the server's words for them.
SCHEMA = {
    "json-run-with": r"field 'run_with'\. Failure reason: 'gpu' does not match",
    "json-cpu": r"field 'cpu_per_trial'\. Failure reason: -2 is less than or equal to the minimum",
    "json-run-choice": r"field 'run_choice'\. Failure reason: 'fresh' is not",
}
#: Cases that pass the schema and fail in the flow run (the table's expected message).
IN_FLOW = ["json-name-newline", "json-name-300", "json-stdlib-trainable", "json-grammar"]


def _parameters(case_id: str) -> dict[str, Any]:
    (case,) = [c for c in CASES if c.id == case_id]
    parameters: dict[str, Any] = {
        "user_name": USER,
        "trainable": TRAINABLE,
        "experiment_name": f"bad-{case_id}",
        "param_space": {"a": 1},
        "run_choice": "run",
    }
    return {**parameters, **case.args}


def _create(server: Server, parameters: dict[str, Any]) -> httpx.Response:
    found = server.get("/deployments/name/radas/sweep")
    return server.send(
        "POST", f"/deployments/{found['id']}/create_flow_run", {"parameters": parameters}
    )


def _held_locks(server: Server) -> list[str]:
    limits = server.post("/v2/concurrency_limits/filter", {"limit": 200})
    return [lim["name"] for lim in limits if lim["active_slots"]]


def test_bad_parameters_through_a_real_deployment(deployed: Server) -> None:
    for case_id, match in SCHEMA.items():
        response = _create(deployed, _parameters(case_id))
        assert response.status_code == 409, response.text  # no flow run is created
        assert re.search(match, response.text, re.S), response.text
    runs = {case_id: _create(deployed, _parameters(case_id)) for case_id in IN_FLOW}
    for case_id, response in runs.items():
        assert response.status_code == 201, response.text
        final = wait_final(deployed, response.json()["id"], timeout=300)
        (case,) = [c for c in CASES if c.id == case_id]
        assert final["state"]["type"] == "FAILED", final["state"]
        assert re.search(case.match, final["state"]["message"] or ""), final["state"]["message"]
    user_folder = deployed.results / USER
    assert not user_folder.exists() or not list(user_folder.iterdir())
    assert _held_locks(deployed) == []
