"""The temporary Prefect server that run_experiment starts: what it skips, and what still works."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from prefect.settings import (
    PREFECT_API_BLOCKS_REGISTER_ON_START,
    PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION,
    temporary_settings,
)
from prefect.settings.legacy import Setting

from radas_flows._startup import _quick_server_settings

# Run in a fresh process with its own PREFECT_HOME: the temporary server is the one
# run_experiment starts (no PREFECT_API_URL), on an empty database.
SCRIPT = """
import json
from prefect.client.orchestration import get_client
from prefect.server.api.server import SubprocessASGIServer
from prefect_email import EmailServerCredentials

from radas_flows._startup import start_temporary_server

server = SubprocessASGIServer()
start_temporary_server(server)
EmailServerCredentials(username="radas", password="not-shown").save("mail")
loaded = EmailServerCredentials.load("mail")
with get_client(sync_client=True) as client:
    slugs = sorted(t.slug for t in client.read_block_types())
print("RESULT " + json.dumps({"user": loaded.username, "slugs": slugs}))
"""


def _start(tmp_path: Path) -> dict:
    environment = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    environment.pop("PREFECT_API_URL", None)
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_temporary_server_skips_registering_collections_and_saved_blocks_load(
    tmp_path: Path,
) -> None:
    result = _start(tmp_path)
    # A saved block registers its own type and loads back.
    assert result["user"] == "radas"
    assert "email-server-credentials" in result["slugs"]
    # The installed collections' other block types were not registered on start.
    assert "aws-credentials" not in result["slugs"]
    assert "s3-bucket" not in result["slugs"]


@pytest.mark.parametrize(
    "setting", [PREFECT_API_BLOCKS_REGISTER_ON_START, PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION]
)
@pytest.mark.parametrize("value", [True, False])
def test_a_registration_setting_the_user_chose_is_kept(setting: Setting, value: bool) -> None:
    assert _quick_server_settings() == {
        PREFECT_API_BLOCKS_REGISTER_ON_START: False,
        PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION: False,
    }
    with temporary_settings(updates={setting: value}):
        assert _quick_server_settings() == {}
