"""Two moons: how does the learning rate affect the learning speed of a small neural network?

Run it from this directory (radas runs are bound to the directory they start from):

    cd examples/two_moons && python -u run_experiment.py
"""

from __future__ import annotations

import asyncio
import os

import seaborn as sns
from matplotlib.colors import LogNorm
from ray import tune
from trainable import trainable  # the trainable lives in its own file, as radas requires

from radas_flows import run_experiment

QUICK = os.environ.get("RADAS_DEMO_QUICK") == "1"  # a smaller sweep, for the test suite


def titled(ax):  # process_g_fn: receives what plot_fn returned (here an Axes)
    ax.set(title="Two moons: test accuracy by learning rate", ylim=(0.4, 1.0))
    return ax


async def main() -> None:
    results = await run_experiment(
        user_name=os.environ.get("RADAS_USER", "demo"),
        experiment_name="two-moons-lr",
        trainable=trainable,
        param_space={
            "lr": tune.grid_search([1e-4, 1e-3, 1e-2] if QUICK else [1e-4, 1e-3, 1e-2, 1e-1]),
            "seed": tune.grid_search([0] if QUICK else [0, 1, 2]),
            "epochs": 5 if QUICK else 40,
        },
        tuner_init_kwargs=dict(tune_config=tune.TuneConfig(metric="accuracy", mode="max")),
        run_with="local",
        run_choice="run",
        rename_mapping={"config/lr": "learning rate"},
        plot_fn=sns.lineplot,
        plot_kwargs=dict(
            x="epoch", y="accuracy", hue="learning rate", palette="viridis", hue_norm=LogNorm()
        ),
        matplotlib_rcParams_update={"figure.figsize": (7, 4.5)},
        process_g_fn=titled,
        plot_format="png",
    )
    df = results["df"]
    final = df[df["epoch"] == df["epoch"].max()]
    summary = final.groupby("learning rate")["accuracy"].agg(["mean", "std"])
    first_90 = (
        df[df["accuracy"] >= 0.9]
        .groupby(["learning rate", "config/seed"])["epoch"]
        .min()
        .groupby("learning rate")
        .mean()
        .reindex(sorted(df["learning rate"].unique()))
    )
    print("\nFinal test accuracy by learning rate:\n" + summary.to_string())
    print(
        "\nMean epochs to reach 90% test accuracy (lower is faster; NaN: never reached):\n"
        + first_90.to_string()
    )
    path = results["tuner"].experiment_path
    print(f"\nFigure: {os.path.join(path, 'radas_figure.png')}")
    print(f"CSV:    {os.path.join(path, 'radas_results.csv')}")


if __name__ == "__main__":
    asyncio.run(main())
