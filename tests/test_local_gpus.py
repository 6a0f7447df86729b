"""Local GPUs: a trial gets cpu_per_trial x GPUs/CPUs of them, as on a cluster (gpu_per_cpu).

This machine has no GPU; Ray's logical GPUs (``RADAS_LOCAL_NUM_GPUS``, passed to the local
Ray as ``num_gpus``) are scheduled and assigned to trials exactly as physical ones, with
``CUDA_VISIBLE_DEVICES`` set per trial. A real CUDA trial runs where a GPU is at hand.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.core import get_ray_results_dir
from radas_flows.errors import RadasValueError
from tests import local_env_trainables as lt
from tests import prefect_reads as pr

pytestmark = pytest.mark.usefixtures("radas_env")


@pytest.fixture
def two_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 2-CPU, 2-GPU machine, as the local Ray sees it."""
    monkeypatch.setenv("RADAS_LOCAL_NUM_CPUS", "2")
    monkeypatch.setenv("RADAS_LOCAL_NUM_GPUS", "2")
    monkeypatch.delenv("RADAS_LOCAL_GPU_PER_CPU", raising=False)


def run(name: str, **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = dict(
        user_name="gpu-user",
        trainable=lt.report_gpus,
        experiment_name=name,
        param_space={"trial": tune.grid_search([0, 1]), "sleep": 2},
        run_choice="run",
    )
    kwargs.update(overrides)
    return asyncio.run(run_experiment(**kwargs))


def availability_row(experiment_name: str) -> dict[str, Any]:
    flow_run = pr.flow_run_named(experiment_name)
    (table,) = [a for a in pr.artifacts_of(flow_run.id) if "clusters" in (a.key or "")]
    (row,) = json.loads(table.data)
    return dict(row)


def test_each_trial_gets_its_share_of_the_local_gpus(workdir: Path, two_gpus: None) -> None:
    df = run("gpu-share")["df"]
    # 2 GPUs / 2 CPUs: a 1-CPU trial gets 1 GPU; the two trials ran at once on different GPUs.
    assert df["gpus"].tolist() == [1.0, 1.0]
    assert sorted(df["gpu_ids"]) == ["0", "1"]
    assert sorted(df["cuda_visible_devices"]) == ["0", "1"]
    row = availability_row("gpu-share")
    assert (row["gpus_total"], row["gpu_per_cpu"], row["gpus_per_trial"]) == (2, "1", "1")


def test_gpu_per_cpu_is_overridable(
    workdir: Path, two_gpus: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_LOCAL_GPU_PER_CPU", "0.5")
    df = run("gpu-half")["df"]
    assert df["gpus"].tolist() == [0.5, 0.5]
    assert availability_row("gpu-half")["gpus_per_trial"] == "0.5"


def test_a_gpu_share_that_cannot_fit_is_refused_before_anything_runs(
    workdir: Path, two_gpus: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RADAS_LOCAL_GPU_PER_CPU", "2")
    with pytest.raises(RadasValueError, match=r"cpu_per_trial=2 gives each trial 4 GPUs"):
        run("gpu-too-many", cpu_per_trial=2)
    stored = Path(get_ray_results_dir("gpu-user"))
    assert not [p for p in stored.glob("*") if "too-many" in p.name or "too_many" in p.name]
    monkeypatch.setenv("RADAS_LOCAL_GPU_PER_CPU", "lots")
    with pytest.raises(RadasValueError, match=r"RADAS_LOCAL_GPU_PER_CPU='lots' is not a number"):
        run("gpu-bad-ratio")


def test_no_gpus_means_no_gpu_share(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADAS_LOCAL_NUM_GPUS", "0")
    df = run("gpu-none", param_space={"trial": 0})["df"]
    assert df["gpus"].tolist() == [0.0]
    assert availability_row("gpu-none")["gpu_per_cpu"] == "0"


CUDA_TRAINABLE = """\
import torch


def train_on_gpu(config):
    assert torch.cuda.is_available(), "CUDA is not available inside the trial"
    x = torch.randn(1024, 64, device="cuda")
    y = x @ torch.randn(64, 1, device="cuda")
    model = torch.nn.Linear(64, 1).cuda()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    for _ in range(100):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    return {"loss": float(loss), "device": str(next(model.parameters()).device)}
"""


@pytest.mark.gpu
def test_a_local_trial_trains_on_cuda(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a machine with a CUDA GPU, a local trial gets it and trains on it."""
    torch = pytest.importorskip("torch", reason="torch is not installed")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA GPU on this machine")
    monkeypatch.delenv("RADAS_LOCAL_NUM_GPUS", raising=False)
    monkeypatch.delenv("RADAS_LOCAL_GPU_PER_CPU", raising=False)
    (workdir / "cuda_trainable.py").write_text(CUDA_TRAINABLE)
    monkeypatch.syspath_prepend(str(workdir))
    sys.modules.pop("cuda_trainable", None)
    import cuda_trainable  # type: ignore[import-not-found]

    from radas_flows.core import local_cpus

    results = run(
        "cuda-local",
        trainable=cuda_trainable.train_on_gpu,
        param_space={"trial": 0},
        cpu_per_trial=local_cpus(),  # the whole machine: every GPU
    )
    (row,) = results["df"].to_dict(orient="records")
    assert row["device"].startswith("cuda"), row
    assert row["loss"] < 1.0
