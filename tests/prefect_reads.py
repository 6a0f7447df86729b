"""Read back what a flow run left in the Prefect API: runs, task runs, artifacts, logs."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def poll(read: Callable[[], T], done: Callable[[T], bool], timeout: float) -> T:
    """``read()`` every 0.25 s until ``done`` holds of it or ``timeout`` s pass; the last read.

    What the server stores in the background (events, task states) is read this way; on a
    timeout the caller's assertions show what was missing.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.25)


def latest_flow_run() -> Any:
    """The flow run that started last."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(sort=FlowRunSort.START_TIME_DESC, limit=1)
    assert runs, "no flow run in the Prefect API"
    return runs[0]


def flow_run_named(name: str) -> Any:
    """The latest flow run called ``name`` (runs are named after their experiment)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName
    from prefect.client.schemas.sorting import FlowRunSort

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(name=FlowRunFilterName(any_=[name])),
            sort=FlowRunSort.START_TIME_DESC,
            limit=1,
        )
    assert runs, f"no flow run named {name!r}"
    return runs[0]


def task_runs_of(flow_run_id: Any, timeout: float = 30) -> list[Any]:
    """Every task run of a flow run, once each has reached a final state.

    Task engines report their state changes as events, which the server stores in the
    background: a task that failed a moment ago may still read Running.
    """
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
    from prefect.events.worker import EventsWorker

    def read() -> list[Any]:
        with get_client(sync_client=True) as client:
            return list(
                client.read_task_runs(
                    flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
                )
            )

    EventsWorker.drain_all(timeout=10)
    return poll(read, lambda runs: all(r.state and r.state.is_final() for r in runs), timeout)


def artifacts_of(flow_run_id: Any) -> list[Any]:
    """Every artifact a flow run created (tables, markdown, progress)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        return list(
            client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        )


def logs_of(flow_run_id: Any) -> list[str]:
    """The messages the Prefect API stored for a flow run and its task runs."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogWorker

    APILogWorker.drain_all(timeout=10)
    messages: list[str] = []
    with get_client(sync_client=True) as client:
        while True:
            page = client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])),
                limit=200,
                offset=len(messages),
            )
            messages += [log.message for log in page]
            if len(page) < 200:
                return messages


def latest_artifact(kind: str, experiment_name: str, user_name: str = "tester") -> Any:
    """The newest artifact of a kind ("summary", "results"...) of an experiment."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    from radas_flows._artifacts import artifact_key

    key = artifact_key(kind, user_name, experiment_name)
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no {kind} artifact for {experiment_name!r}"
    return found[0]


def events_about(resource_id: str, expected: set[str], timeout: float = 60) -> list[Any]:
    """The events whose resource is ``resource_id``, oldest first, once ``expected`` are in.

    Events are sent in the background and stored in batches: poll until every expected event
    name is there (or the timeout passes; the caller's assertions then say what is missing).
    """
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventResourceFilter
    from prefect.events.worker import EventsWorker

    def read() -> list[Any]:
        with get_client(sync_client=True) as client:
            page = client.read_events(
                EventFilter(resource=EventResourceFilter(id=[resource_id])), limit=50
            )
        return sorted(page.events, key=lambda e: e.occurred)

    EventsWorker.drain_all(timeout=10)
    return poll(read, lambda events: expected <= {e.event for e in events}, timeout)
