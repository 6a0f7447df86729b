"""Local runtime_env: Ray installs a trial's packages on this machine too (pip from a wheel)."""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from radas_flows import run_experiment
from radas_flows.inputs.runtime_env import check_runtime_env
from tests import local_env_trainables as lt

pytestmark = pytest.mark.usefixtures("radas_env")


def build_wheel(tmp_path: Path, module: str) -> Path:
    """A tiny package built here with ``pip wheel`` (no index), into a find-links folder."""
    source = tmp_path / "source"
    (source / "src" / module).mkdir(parents=True)
    (source / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=70"]\nbuild-backend = "setuptools.build_meta"\n'
        f'[project]\nname = "{module.replace("_", "-")}"\nversion = "0.1.0"\n'
    )
    (source / "src" / module / "__init__.py").write_text('VALUE = "installed from a wheel"\n')
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "--no-index", "-q", "-w", str(wheels), str(source)],
        check=True,
        timeout=120,
    )  # fmt: skip
    assert len(list(wheels.glob("*.whl"))) == 1
    return wheels


@pytest.fixture
def fresh_local_ray() -> Iterator[None]:
    """Stop the local Ray after the test and delete the environments Ray made for it.

    A pip runtime_env copies this virtual environment (about 1.5 GB here) into the Ray
    session's folder, which Ray leaves behind when it stops.
    """
    import ray

    yield
    if not ray.is_initialized():
        return
    session = Path(ray._private.worker._global_node.get_session_dir_path())
    ray.shutdown()
    for kind in ("pip", "uv", "conda"):
        shutil.rmtree(session / "runtime_resources" / kind, ignore_errors=True)


@pytest.mark.slow
def test_a_package_from_a_local_wheel_is_installed_into_the_trials(
    workdir: Path, tmp_path: Path, fresh_local_ray: None
) -> None:
    module = f"radas_probe_{uuid.uuid4().hex[:8]}"
    wheels = build_wheel(tmp_path, module)
    runtime_env = {
        "pip": {
            "packages": [module.replace("_", "-")],
            "pip_install_options": ["--no-index", "--find-links", str(wheels), "--no-cache-dir"],
        },
        "env_vars": {"RADAS_TEST_ENV_VAR": "set by runtime_env"},
    }
    results = asyncio.run(
        run_experiment(
            user_name="env-user",
            trainable=lt.report_package,
            experiment_name="local-pip",
            param_space={"module": module},
            runtime_env=runtime_env,
            run_choice="run",
        )
    )
    (row,) = results["df"].to_dict(orient="records")
    assert row["value"] == "installed from a wheel"
    assert "/runtime_resources/pip/" in row["module_file"]  # Ray's copy of the environment
    assert row["env_var"] == "set by runtime_env"
    assert importlib.util.find_spec(module) is None  # the driver's environment is unchanged


def test_a_local_installer_that_is_missing_here_is_named_before_anything_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("CONDA_EXE", raising=False)
    monkeypatch.delenv("RAY_CONDA_HOME", raising=False)
    with pytest.raises(ValueError, match=r"runtime_env\['conda'\] on a local run needs conda"):
        check_runtime_env({"conda": {"dependencies": ["numpy"]}}, local=True)
    assert check_runtime_env({"conda": "myenv"}, local=False) == {"conda": "myenv"}
