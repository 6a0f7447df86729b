"""GPU proof: a cluster trial trains on CUDA with torch and is not falling back to the CPU."""

from __future__ import annotations

import asyncio
import importlib
import sys
import uuid
from pathlib import Path

import pytest
from ray import tune

from radas_flows import run_experiment
from radas_flows.core import local_gpus

torch = pytest.importorskip("torch", reason="torch is not installed")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.cluster,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine"),
    pytest.mark.usefixtures("radas_env", "cluster_registry"),
]

TRAINABLE = """\
import torch


def train_on_gpu(config):
    assert torch.cuda.is_available(), "CUDA is not available inside the trial"
    device = torch.device("cuda")
    torch.manual_seed(0)
    x = torch.randn(4096, 64, device=device)
    y = x @ torch.randn(64, 1, device=device)
    model = torch.nn.Linear(64, 1).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config["lr"])
    for _ in range(200):
        optimizer.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        optimizer.step()
    weight = next(model.parameters())
    return {
        "loss": float(loss),
        "device": str(weight.device),
        "gpu_name": torch.cuda.get_device_name(weight.device),
    }
"""


def test_trial_trains_on_cuda(workdir: Path) -> None:
    assert local_gpus() >= 1
    name = f"gpu_trainable_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text(TRAINABLE)
    sys.path.insert(0, str(workdir))
    try:
        module = importlib.import_module(name)
    finally:
        sys.path.remove(str(workdir))
    # cpu_per_trial=2 on the loopback cluster (gpu_per_cpu = 1) gives the trial both logical
    # GPUs; CUDA then exposes the machine's first GPU as cuda:0 even with one physical GPU.
    results = asyncio.run(
        run_experiment(
            user_name="gpu",
            trainable=module.train_on_gpu,
            experiment_name="cuda-proof",
            run_with="cluster:loopback",
            param_space={"lr": tune.grid_search([0.05])},
            run_choice="run",
            cpu_per_trial=2,
        )
    )
    (row,) = results["df"].to_dict(orient="records")
    assert row["device"].startswith("cuda"), row
    assert row["gpu_name"]
    assert row["loss"] < 1.0
