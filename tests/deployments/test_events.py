"""Events of a sweep read back from a real server, and an automation that acts on them."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.deployments.conftest import Server

pytestmark = pytest.mark.slow

SWEEP = """\
from ray import tune

from radas_flows import run_experiment_sync


def trainable(config):
    return {"score": config["a"] * 10}


run_experiment_sync(
    user_name="evan",
    experiment_name="evented",
    trainable=trainable,
    param_space={"a": tune.grid_search([1, 2])},
    run_choice="run",
)
"""


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps every body POSTed to it."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        bodies = self.bodies

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                bodies.append(self.rfile.read(int(self.headers.get("Content-Length", 0))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    hook = Receiver()
    try:
        yield hook
    finally:
        hook.server.shutdown()
        hook.server.server_close()


def create_automation(server: Server, hook_url: str) -> None:
    """The example of docs/events.md, with a receiver on this machine."""
    from prefect.automations import Automation
    from prefect.blocks.webhook import Webhook
    from prefect.events.actions import CallWebhook
    from prefect.events.schemas.automations import EventTrigger
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings(updates={PREFECT_API_URL: server.api}):
        webhook = Webhook(url=hook_url, method="POST", allow_private_urls=True)
        webhook.save("sweep-finished", overwrite=True)
        Automation(
            name="sweep finished",
            trigger=EventTrigger(
                expect={"radas.experiment.completed"},
                match={"prefect.resource.id": "radas.experiment.*"},
                posture="Reactive",
                threshold=1,
                within=0,
            ),
            actions=[
                CallWebhook(
                    block_document_id=webhook._block_document_id,
                    payload=(
                        '{"text": "{{ event.resource.name }} finished", '
                        '"resource": "{{ event.resource.id }}", '
                        '"trials": "{{ event.payload.trials }}"}'
                    ),
                )
            ],
        ).create()


def radas_events(server: Server) -> list[dict[str, Any]]:
    body = {"filter": {"event": {"prefix": ["radas.experiment."]}}, "limit": 50}
    return list(server.post("/events/filter", body)["events"])


def test_a_sweep_emits_its_events_and_an_automation_acts_on_completed(
    prefect_server: Server, receiver: Receiver, tmp_path: Path
) -> None:
    server = prefect_server
    create_automation(server, receiver.url)
    (tmp_path / "sweep.py").write_text(SWEEP)
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "sweep.py"],
        cwd=tmp_path,
        env=server.env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    print(f"\nsweep against the server finished in {time.monotonic() - started:.1f} s")

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        events = [e for e in radas_events(server) if e["resource"].get("radas.user") == "evan"]
        names = {e["event"] for e in events}
        if {"radas.experiment.started", "radas.experiment.completed"} <= names and receiver.bodies:
            break
        time.sleep(1)
    assert {e["event"] for e in events} == {
        "radas.experiment.started",
        "radas.experiment.completed",
    }, events
    completed = next(e for e in events if e["event"] == "radas.experiment.completed")
    resource_id = completed["resource"]["prefect.resource.id"]
    assert resource_id.startswith("radas.experiment.evan.") and resource_id.endswith("evented")
    assert completed["resource"]["prefect.resource.name"] == "evented"
    assert completed["payload"]["state"] == "completed"
    assert completed["payload"]["trials"] == {"TERMINATED": 2}
    (flow_run,) = [r for r in completed["related"] if r["prefect.resource.role"] == "flow-run"]
    run = server.get(f"/flow_runs/{flow_run['prefect.resource.id'].rsplit('.', 1)[-1]}")
    assert run["state"]["type"] == "COMPLETED"

    # The automation called the webhook with the completed event.
    assert receiver.bodies, "the automation did not call the webhook"
    body = json.loads(receiver.bodies[0])
    assert body["text"] == "evented finished" and body["resource"] == resource_id
    assert "TERMINATED" in body["trials"]
