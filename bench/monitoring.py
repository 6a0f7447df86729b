"""Benchmark: following a long job log, incrementally against downloading it on every poll.

A Ray job on a loopback ``ray start --head`` prints a long log (default 120,000 lines of
about 110 characters, 13 MB, over about 30 s). It is followed two ways, alternated, each
relaying every line through ``LogRelay`` as the monitor stage does:

* the whole log on every poll (``get_job_logs``, with the monitor's growing poll interval):
  how the monitor followed a job before;
* the log's stream (``radas_flows.clusters.log_tail.LogTail`` over Ray's
  ``tail_job_logs``), with a status poll every second: how it follows one now.

Reported: characters moved to the follower, the follower's CPU seconds, and the CPU seconds
of the head's processes (dashboard, job agent) while following. Target: bytes moved no more
than about the log's size (ratio to the log at most 1.1) and less CPU than before.

Run: ``python bench/monitoring.py`` (about 3 minutes alone on 2 CPUs; ``--quick``: 40,000 lines).
"""

from __future__ import annotations

import contextlib
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _bench

JOB = (
    "import sys, time\n"
    "n = int(sys.argv[1]); per = max(1, n // 300)\n"
    "for i in range(n):\n"
    "    print(f'{i:08d} ' + 'x' * 100)\n"
    "    if i % per == 0:\n"
    "        sys.stdout.flush(); time.sleep(0.1)\n"
)


def head_cpu_s(marker: str) -> float:
    import psutil

    from tests.clusters.loopback_ray import _cluster_processes

    total = 0.0
    for proc in _cluster_processes(marker):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            total += times.user + times.system
    return total


def follow(client: Any, job_id: str, how: str) -> dict[str, float]:
    from radas_flows.clusters.job_log import LogRelay, poll_interval
    from radas_flows.clusters.log_tail import LogTail

    relay = LogRelay()
    moved = offset = 0
    cpu0 = time.process_time()
    stream = LogTail(client, job_id) if how == "stream" else None
    try:
        while True:
            terminal = client.get_job_status(job_id).is_terminal()
            if stream is not None:
                if terminal:
                    stream.wait_ended(10)
                text = stream.read()
                moved += len(text)
            else:
                logs = client.get_job_logs(job_id)
                moved += len(logs)
                text, offset = logs[offset:], len(logs)
            relay.feed(text)
            offset = offset if stream is None else offset + len(text)
            if terminal:
                break
            time.sleep(1.0 if stream is not None else poll_interval(offset))
    finally:
        if stream is not None:
            stream.close()
    return {"moved_chars": moved, "log_chars": offset, "cpu_s": time.process_time() - cpu0}


def main(argv: list[str] | None = None) -> int:
    p = _bench.parser(__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, default=None)
    args = p.parse_args(argv)
    started = time.perf_counter()
    lines = args.lines or (40_000 if args.quick else 120_000)
    repeats = args.repeats or (1 if args.quick else 2)
    sys.path.insert(0, str(_bench.REPO))
    import os

    from tests.clusters.loopback_ray import start_head, stop_head

    head = start_head(num_cpus=2, num_gpus=0)
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN_PATH"] = str(head.token_file)
    from ray.job_submission import JobSubmissionClient

    client = JobSubmissionClient(head.dashboard_url)
    jobdir = Path(tempfile.mkdtemp(prefix="log-job-", dir=_bench.WORK_DIR))
    (jobdir / "log_job.py").write_text(JOB)
    runs: dict[str, list[dict[str, float]]] = {"stream": [], "whole": []}
    try:

        def side(how: str) -> float:
            job_id = client.submit_job(
                entrypoint=f"python log_job.py {lines}", runtime_env={"working_dir": str(jobdir)}
            )
            cpu0 = head_cpu_s(str(head.temp_dir))
            out = follow(client, job_id, how)
            out["head_cpu_s"] = head_cpu_s(str(head.temp_dir)) - cpu0
            runs[how].append(out)
            return out["moved_chars"] / 1e6

        print(f"monitoring: a log of {lines} lines, {repeats} runs each, alternated (MB moved)")
        _bench.alternate(
            {"stream": lambda: side("stream"), "whole": lambda: side("whole")}, repeats
        )
    finally:
        stop_head(head)
    med = _bench.median

    def m(how: str, key: str) -> float:
        value = med([r[key] for r in runs[how]])
        assert value is not None
        return value

    log_mb = m("stream", "log_chars") / 1e6
    cases = [
        _bench.Case(
            name="log followed: MB moved",
            what=f"a {log_mb:.1f} MB job log, followed to the job's end",
            ours_s=m("stream", "moved_chars") / 1e6,
            baseline_s=m("whole", "moved_chars") / 1e6,
            baseline_what="the whole log downloaded on every poll (before)",
            unit="MB",
            target="<= 1.1x the log's size",
            met=m("stream", "moved_chars") <= 1.1 * m("stream", "log_chars"),
            note=f"the log itself: {log_mb:.1f} MB",
        ),
        _bench.Case(
            name="log followed: follower CPU",
            what="CPU seconds of the following process",
            ours_s=m("stream", "cpu_s"),
            baseline_s=m("whole", "cpu_s"),
            baseline_what="the whole log downloaded on every poll (before)",
            target="< before",
            met=m("stream", "cpu_s") < m("whole", "cpu_s"),
        ),
        _bench.Case(
            name="log followed: head CPU",
            what="CPU seconds of the head's processes while following",
            ours_s=m("stream", "head_cpu_s"),
            baseline_s=m("whole", "head_cpu_s"),
            baseline_what="the whole log downloaded on every poll (before)",
            target="< before",
            met=m("stream", "head_cpu_s") < m("whole", "head_cpu_s"),
            note="includes the job itself (the same in both)",
        ),
    ]
    for case in cases:
        case.extra["runs"] = runs
    _bench.write_results("monitoring", cases, quick=args.quick, started=started)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
