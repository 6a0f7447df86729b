"""The README's main job: the two-moons example runs as a user runs it and writes figure and CSV."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "two_moons"


def test_two_moons_example_writes_figure_and_csv(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "RADAS_DEMO_QUICK": "1",  # 3 learning rates x 1 seed x 5 epochs
        "RADAS_RESULTS_ROOT": str(tmp_path),
        "RADAS_USER": "ci",
    }
    env.pop("PREFECT_API_URL", None)  # the embedded default: an ephemeral Prefect API
    proc = subprocess.run(
        [sys.executable, "-u", "run_experiment.py"],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=480,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = {
        line.split(":", 1)[0]: line.split(":", 1)[1].strip()
        for line in proc.stdout.splitlines()
        if line.startswith(("Figure:", "CSV:"))
    }
    figure, csv = Path(lines["Figure"]), Path(lines["CSV"])
    assert figure.is_relative_to(tmp_path) and csv.is_relative_to(tmp_path)
    assert figure.read_bytes()[:4] == b"\x89PNG"
    df = pd.read_csv(csv)
    assert sorted(df["learning rate"].unique()) == [1e-4, 1e-3, 1e-2]
    assert df.groupby("trial_id")["epoch"].max().eq(5).all()
    assert df["accuracy"].between(0, 1).all()
    assert "Final test accuracy by learning rate" in proc.stdout
