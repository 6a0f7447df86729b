"""Ray Tune keeps its results on the moto S3 server and reads them back."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from conftest import Credentials, S3Server


@pytest.fixture
def local_ray(s3_bucket: str) -> Iterator[None]:
    """A private one-CPU Ray started after the AWS test environment is in place.

    A Ray that other tests of this session already started in this process is used as it is
    (the S3 filesystem carries its own credentials, so its workers need no AWS variables).
    """
    import ray

    if ray.is_initialized():
        yield
        return
    from radas_flows.targets.local import _loopback_only

    with _loopback_only():  # on 127.0.0.1 only, as the product's local Ray
        ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def test_tune_results_stored_on_s3_and_restored(
    s3_server: S3Server,
    s3_bucket: str,
    aws_credentials: Credentials,
    local_ray: None,
    tmp_path: Any,
) -> None:
    import pyarrow.fs
    from ray import tune

    def _double(config: dict[str, Any]) -> dict[str, Any]:
        # Defined here so that it is pickled by value: workers cannot import test modules.
        return {"score": config["x"] * 2}

    fs = pyarrow.fs.S3FileSystem(
        endpoint_override=f"{s3_server.host}:{s3_server.port}",
        scheme="http",
        access_key=aws_credentials.user,
        secret_key=aws_credentials.password,
        region="us-east-1",
    )
    storage_path = f"{s3_bucket}/ray-results/alice"
    tuner = tune.Tuner(
        _double,
        param_space={"x": tune.grid_search([1, 2, 3])},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            name="s3-sweep",
            storage_path=storage_path,
            storage_filesystem=fs,
            verbose=0,
        ),
    )
    results = tuner.fit()

    assert results.num_errors == 0
    assert sorted(results.get_dataframe()["score"]) == [2, 4, 6]

    listing = s3_server.client().list_objects_v2(Bucket=s3_bucket, Prefix="ray-results/alice/")
    keys = [o["Key"] for o in listing.get("Contents", [])]
    assert any(k.startswith("ray-results/alice/s3-sweep/experiment_state") for k in keys), keys
    assert sum(k.endswith("/result.json") for k in keys) == 3, keys

    experiment = f"{storage_path}/s3-sweep"
    assert tune.Tuner.can_restore(experiment, storage_filesystem=fs)
    restored = tune.Tuner.restore(experiment, trainable=_double, storage_filesystem=fs)
    grid = restored.get_results()
    assert sorted(r.metrics["score"] for r in grid) == [2, 4, 6]
    best = grid.get_best_result(metric="score", mode="max")
    assert best.config["x"] == 3
    assert best.path.startswith(experiment)
