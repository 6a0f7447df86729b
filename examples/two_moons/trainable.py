"""How fast does a small neural network learn the two moons, for each learning rate?"""

from __future__ import annotations

import warnings
from typing import Any

from ray import tune


def trainable(config: dict[str, Any]) -> None:
    """Train an MLP on two moons with ``config["lr"]``; report accuracy and loss every epoch."""
    import numpy as np
    from sklearn.datasets import make_moons
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.model_selection import train_test_split
    from sklearn.neural_network import MLPClassifier

    seed = int(config["seed"])
    x, y = make_moons(n_samples=config.get("n_samples", 1000), noise=0.2, random_state=seed)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.3, random_state=seed)
    model = MLPClassifier(
        hidden_layer_sizes=tuple(config.get("hidden", (16, 16))),
        learning_rate_init=config["lr"],
        batch_size="auto",  # partial_fit gets one mini-batch at a time
        random_state=seed,
    )
    classes = np.unique(y)
    rng = np.random.default_rng(seed)
    for epoch in range(1, config.get("epochs", 40) + 1):
        order = rng.permutation(len(x_train))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            for start in range(0, len(order), 32):
                batch = order[start : start + 32]
                model.partial_fit(x_train[batch], y_train[batch], classes=classes)
        tune.report(
            {
                "epoch": epoch,
                "accuracy": float(model.score(x_test, y_test)),
                "loss": float(model.loss_),
            }
        )
