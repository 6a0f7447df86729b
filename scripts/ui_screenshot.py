"""Screenshots of a radas flow run in the Prefect UI, taken with headless Chromium.

Looks at what a user sees: the flow run page (name, tags, task graph), its Artifacts tab,
and the figure and summary artifacts. Chromium is driven over the DevTools protocol, so
tabs can be clicked like a user would.

    # against a running server (a flow run id, or the name of the latest run so named)
    python scripts/ui_screenshot.py --url http://127.0.0.1:4200 --flow-run two-moons-lr

    # self-contained: a private server on a free port, one small radas run, screenshots
    python scripts/ui_screenshot.py --demo --out /tmp/radas-ui-screenshots

Needs Debian's chromium (`apt-get install -y chromium`); run from the repository root.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--remote-debugging-port=0",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(api_url: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{api_url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"the Prefect server at {api_url} did not become healthy in {timeout} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    """Stop a process group we started: SIGTERM, then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)


@contextmanager
def private_server(home: Path) -> Iterator[str]:
    """A Prefect server on 127.0.0.1 at a free port, with its own PREFECT_HOME."""
    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_API_URL": f"http://127.0.0.1:{port}/api",  # where the browser calls
    }
    env.pop("PREFECT_API_URL", None)
    log = (home / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)],
        env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        wait_healthy(f"http://127.0.0.1:{port}/api")
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(process)
        log.close()


def demo_run(url: str, results: Path) -> None:
    """One small radas sweep with a figure, run in a child process against ``url``."""
    code = (
        "from radas_flows.flows import radas\n"
        "radas(user_name='demo', trainable='tests.trainables_for_tests:reporting',\n"
        "      experiment_name='ui-demo',\n"
        "      param_space={'a': {'grid_search': [1, 2, 3]}},\n"
        "      tuner={'metric': 'score', 'mode': 'max'},\n"
        "      plot={'fn': 'lineplot', 'kwargs': {'x': 'training_iteration', 'y': 'score',\n"
        "            'hue': 'config/a'}}, run_choice='run')\n"
    )
    env = {
        **os.environ,
        "PREFECT_API_URL": f"{url}/api",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "RADAS_RESULTS_ROOT": str(results),
        "RADAS_LOCAL_NUM_CPUS": os.environ.get("RADAS_LOCAL_NUM_CPUS", "2"),
        "MPLBACKEND": "Agg",
    }
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, check=True, timeout=600)


def find_flow_run(url: str, flow_run: str) -> dict[str, Any]:
    """A flow run by id, or the latest one with this name."""
    api = f"{url}/api"
    response = httpx.get(f"{api}/flow_runs/{flow_run}", timeout=10)
    if response.status_code == 200:
        return dict(response.json())
    body = {"flow_runs": {"name": {"any_": [flow_run]}}, "sort": "START_TIME_DESC", "limit": 1}
    runs = httpx.post(f"{api}/flow_runs/filter", json=body, timeout=10).json()
    if not runs:
        raise SystemExit(f"no flow run with id or name {flow_run!r} at {url}")
    return dict(runs[0])


def artifacts_of(url: str, flow_run_id: str) -> list[dict[str, Any]]:
    body = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
    return list(httpx.post(f"{url}/api/artifacts/filter", json=body, timeout=10).json())


class Page:
    """One Chromium tab driven over the DevTools protocol."""

    def __init__(self, ws_url: str) -> None:
        from websockets.sync.client import connect

        self.ws = connect(ws_url, max_size=64 * 1024 * 1024, proxy=None)
        self.next_id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv(timeout=60))
            if message.get("id") == self.next_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def wait_for_text(self, text: str, timeout: float = 45) -> None:
        deadline = time.monotonic() + timeout
        probe = f"document.body && document.body.innerText.includes({json.dumps(text)})"
        while time.monotonic() < deadline:
            if self.evaluate(probe):
                return
            time.sleep(0.5)
        shown = self.evaluate("document.body ? document.body.innerText.slice(0, 300) : ''")
        raise TimeoutError(f"the page never showed {text!r}; it shows: {shown!r}")

    def open(self, url: str, expect: str, settle: float = 2) -> None:
        self.call("Page.navigate", url=url)
        self.wait_for_text(expect)
        time.sleep(settle)  # let the graph, charts and markdown finish rendering

    def click_text(self, text: str) -> None:
        clicked = self.evaluate(
            "(() => { const el = [...document.querySelectorAll('button, a, [role=tab], li, span')]"
            f".find(e => e.innerText && e.innerText.trim() === {json.dumps(text)});"
            " if (el) { el.click(); return true; } return false; })()"
        )
        if not clicked:
            raise RuntimeError(f"nothing to click with the text {text!r}")
        time.sleep(3)

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))
        print(f"saved {path} ({path.stat().st_size // 1024} KB)")


@contextmanager
def chromium(width: int, height: int) -> Iterator[Page]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        raise SystemExit("chromium not found: install it with `apt-get install -y chromium`")
    with tempfile.TemporaryDirectory(prefix="radas-chromium-") as profile:
        process = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            port_file = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 60
            while not port_file.exists() or not port_file.read_text().strip():
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("chromium did not open its DevTools port")
                time.sleep(0.2)
            port = port_file.read_text().split()[0]
            targets = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
            page = Page(next(t for t in targets if t["type"] == "page")["webSocketDebuggerUrl"])
            page.call("Page.enable")
            page.call(
                "Emulation.setDeviceMetricsOverride",
                width=width, height=height, deviceScaleFactor=1, mobile=False,
            )  # fmt: skip
            yield page
            page.ws.close()
        finally:
            stop(process)


def take(url: str, flow_run: str, out: Path, width: int, height: int) -> list[Path]:
    run = find_flow_run(url, flow_run)
    out.mkdir(parents=True, exist_ok=True)
    shots: list[Path] = []
    with chromium(width, height) as page:
        page.open(f"{url}/runs/flow-run/{run['id']}", run["name"], settle=6)
        shots.append(out / "flow-run.png")
        page.screenshot(shots[-1])
        page.click_text("Artifacts")
        shots.append(out / "flow-run-artifacts.png")
        page.screenshot(shots[-1])
        for artifact in artifacts_of(url, run["id"]):
            kind = (artifact.get("key") or "").split("-")[1:2]
            if kind and kind[0] in ("figure", "summary"):
                page.open(f"{url}/artifacts/artifact/{artifact['id']}", artifact["key"])
                shots.append(out / f"artifact-{kind[0]}.png")
                page.screenshot(shots[-1])
    return shots


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="Prefect server, e.g. http://127.0.0.1:4200")
    parser.add_argument("--flow-run", help="flow run id, or the name of the latest run so named")
    parser.add_argument("--demo", action="store_true", help="private server + one small run")
    parser.add_argument(
        "--out", type=Path, default=Path(tempfile.gettempdir()) / "radas-ui-screenshots"
    )
    parser.add_argument("--width", type=int, default=1440)
    parser.add_argument("--height", type=int, default=1000)
    args = parser.parse_args(argv)
    if args.demo:
        with (
            tempfile.TemporaryDirectory(prefix="radas-ui-") as tmp,
            private_server(Path(tmp)) as url,
        ):
            demo_run(url, Path(tmp) / "results")
            take(url, "ui-demo", args.out, args.width, args.height)
        return 0
    if not args.url or not args.flow_run:
        parser.error("give --url and --flow-run, or --demo")
    take(args.url.rstrip("/"), args.flow_run, args.out, args.width, args.height)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
