"""The private local Ray listens on loopback only: nothing outside the machine reaches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

# In a fresh process: a local Ray of this test's own, and every socket its processes listen on.
PROBE = textwrap.dedent(
    """
    import json, psutil, ray
    from radas_flows.targets.local import ensure_local_ray

    ensure_local_ray({})

    @ray.remote
    def where():
        return ray.util.get_node_ip_address()

    node_ip = ray.get(where.remote())  # a worker process runs too
    found = set()
    for proc in [psutil.Process(), *psutil.Process().children(recursive=True)]:
        try:
            for conn in proc.net_connections(kind="inet"):
                if conn.status == psutil.CONN_LISTEN:
                    found.add(f"{proc.name()} {conn.laddr.ip}")
        except psutil.Error:
            continue
    print(json.dumps({"node_ip": node_ip, "listening": sorted(found)}))
    """
)
LOOPBACK = ("127.0.0.1", "::1", "::ffff:127.0.0.1")


def _probe(**env: str) -> dict[str, object]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_ENABLE"))}
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        env={**clean, "RAY_USAGE_STATS_ENABLED": "0", **env},
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def test_the_local_ray_listens_on_loopback_only() -> None:
    seen = _probe()
    assert seen["node_ip"] == "127.0.0.1"
    listening = list(seen["listening"])  # type: ignore[call-overload]
    assert any(entry.startswith(("gcs_server", "raylet")) for entry in listening), listening
    outside = [entry for entry in listening if entry.split()[-1] not in LOOPBACK]
    assert not outside, f"listening beyond loopback: {outside}"


def test_ray_s_own_switch_still_decides_where_it_is_set() -> None:
    seen = _probe(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="1")
    assert seen["node_ip"] != "127.0.0.1"  # Ray's multi-node mode: the machine's address
