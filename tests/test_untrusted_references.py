"""``module:attribute`` values given as flow parameters name the project's code only.

Anyone who can start a ``radas/sweep`` run sends JSON. The attacks here are the ones found
against the code before references were confined to the run's working directory: a pandas
method that evaluates an expression, and radas_flows' own driver entrypoint as a trainable.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import pickle
import uuid
from pathlib import Path
from typing import Any

import pytest

from radas_flows.inputs.flow_params import spec_arguments
from radas_flows.inputs.references import (
    import_reference,
    resolve_callable_reference,
    resolve_trainable_reference,
)
from radas_flows.inputs.rules import ParameterError
from radas_flows.inputs.spec import build_spec

ROOT = Path(__file__).resolve().parents[1]

PROJECT_ONLY = r"references given as parameters may name only modules in the project"


def _flow_parameters(text: str) -> dict[str, Any]:
    """Parameters as a deployment run receives them: parsed from JSON text."""
    parameters: dict[str, Any] = json.loads(text)
    return parameters


class _System:
    """Pickles as a call of os.system (what a hostile ``--spec`` would carry)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.system, (self.command,))


# ---------------------------------------------------------------------------------------------
# The attacks, through a real call of the radas flow with JSON parameters
# ---------------------------------------------------------------------------------------------


@pytest.mark.usefixtures("radas_env")
def test_pandas_eval_hook_from_json_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radas_flows.flows import radas

    monkeypatch.chdir(ROOT)  # a deployment run's working directory: the repository
    pwned = tmp_path / "PWNED"
    parameters = _flow_parameters(
        json.dumps(
            {
                "user_name": "attacker",
                "trainable": "tests.trainables_for_tests:returning",
                "experiment_name": f"eval-{uuid.uuid4().hex[:6]}",
                "param_space": {"a": 1},
                "run_choice": "run",
                "process_df_fn": "pandas:DataFrame.eval",
                "process_df_fn_kwargs": {
                    "expr": f"@os.system('id > {pwned}')",
                    "engine": "python",
                },
            }
        )
    )
    try:
        radas(**parameters)
    except ParameterError as e:
        text = str(e)
    else:
        text = "the flow accepted process_df_fn='pandas:DataFrame.eval'"
    assert not pwned.exists(), f"the expression ran the command: {pwned.read_text()!r}"
    assert "process_df_fn='pandas:DataFrame.eval'" in text
    assert "site-packages" in text and PROJECT_ONLY.replace("\\", "") in text
    assert "from pandas import DataFrame" in text  # how to expose it from the project


def test_driver_entrypoint_as_trainable_from_json_runs_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from radas_flows.flows import radas

    monkeypatch.chdir(ROOT)
    pwned = tmp_path / "PWNED"
    payload = base64.b64encode(pickle.dumps(_System(f"id > {pwned}"))).decode()
    # Tune calls a function trainable as trainable(config): main's argparse reads the config's
    # keys as argv, and `--spec` goes to pickle.loads.
    config = {f"--spec={payload}": 1}
    parameters = _flow_parameters(
        json.dumps(
            {
                "user_name": "attacker",
                "trainable": "radas_flows.driver:main",
                "experiment_name": f"driver-{uuid.uuid4().hex[:6]}",
                "param_space": config,
            }
        )
    )
    arguments = dict(parameters)
    try:
        spec = build_spec(**spec_arguments(arguments, cwd=str(ROOT)), cwd=str(ROOT))
    except ParameterError as e:
        text = str(e)
    else:
        with contextlib.suppress(Exception):
            spec.trainable(config)  # what a Tune trial does with the spec's trainable
        text = "the flow's parameters accepted trainable='radas_flows.driver:main'"
    assert not pwned.exists(), f"the pickled payload ran the command: {pwned.read_text()!r}"
    assert "trainable='radas_flows.driver:main'" in text and "radas_flows itself" in text, text
    # The flow itself refuses it before anything runs.
    with pytest.raises(ParameterError, match=r"radas_flows itself"):
        radas(**parameters)


# ---------------------------------------------------------------------------------------------
# The rule, case by case (nothing is imported from outside the project)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "kind"),
    [
        ("json:dumps", "the standard library"),
        ("os:system", "the standard library"),
        ("builtins:eval", "built into Python"),
        ("sys:exit", "built into Python"),
        ("pandas:DataFrame.eval", "installed in site-packages"),
        ("ray.tune:run", "installed in site-packages"),
        ("radas_flows.driver:main", "radas_flows itself"),
        ("radas_flows.analysis:os.system", "radas_flows itself"),
    ],
)
def test_references_outside_the_project_are_refused(ref: str, kind: str, workdir: Path) -> None:
    for resolve in (
        lambda: resolve_callable_reference(ref, field="process_df_fn", cwd=workdir),
        lambda: resolve_trainable_reference(ref, cwd=workdir),
        lambda: spec_arguments({"process_g_fn": ref}, cwd=str(workdir)),
        lambda: build_spec(user_name="u", trainable=ref, experiment_name="x", cwd=str(workdir)),
    ):
        with pytest.raises(ParameterError, match=PROJECT_ONLY) as e:
            resolve()
        assert kind in str(e.value)
        assert str(workdir) in str(e.value)
        module, attribute = ref.split(":")
        assert f"`from {module} import {attribute.split('.')[0]}`" in str(e.value)


def test_the_project_is_refused_its_venv_and_radas_flows_when_they_lie_inside(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The repository holds radas_flows (and often .venv): the working directory of a
    # deployment run does not make them project code.
    monkeypatch.chdir(ROOT)
    with pytest.raises(ParameterError, match=r"radas_flows itself"):
        resolve_callable_reference("radas_flows.utils:get_ray_results_dir", field="plot_fn")
    assert resolve_callable_reference(
        "tests.trainables_for_tests:returning", field="process_df_fn", cwd=ROOT
    ).__name__ == ("returning")


def test_a_module_never_imported_is_checked_before_it_runs(workdir: Path) -> None:
    import sys

    # `antigravity` opens a web browser when imported: refused from its location alone.
    sys.modules.pop("antigravity", None)
    with pytest.raises(ParameterError, match=r"the standard library"):
        import_reference("antigravity:geohash", field="process_df_fn", cwd=workdir)
    assert "antigravity" not in sys.modules


def test_attributes_do_not_walk_out_of_the_project(workdir: Path) -> None:
    name = f"proj_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text(
        "import os\nimport pandas as pd\n\ndef hook(df):\n    return df\n"
    )
    assert resolve_callable_reference(f"{name}:hook", field="process_df_fn", cwd=workdir)
    with pytest.raises(ParameterError, match=r"reaches the module 'os' through an attribute"):
        resolve_callable_reference(f"{name}:os.system", field="process_df_fn", cwd=workdir)
    with pytest.raises(ParameterError, match=r"reaches the module 'pandas'"):
        resolve_callable_reference(f"{name}:pd.DataFrame.eval", field="process_df_fn", cwd=workdir)
    for piece in ("hook.__globals__", "hook.__class__", "hook.__builtins__"):
        with pytest.raises(ParameterError, match=r"names a special attribute"):
            resolve_callable_reference(f"{name}:{piece}", field="process_df_fn", cwd=workdir)


def test_a_function_from_elsewhere_works_once_the_project_exposes_it(workdir: Path) -> None:
    import pandas as pd

    name = f"hooks_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text(
        "from tests.trainables_for_tests import returning\nfrom pandas import DataFrame\n"
    )
    args = spec_arguments(
        {"process_df_fn": f"{name}:DataFrame.head", "tuner_to_df_fn": f"{name}:returning"},
        cwd=str(workdir),
    )
    assert args["process_df_fn"] is pd.DataFrame.head
    spec = build_spec(
        user_name="u", trainable=f"{name}:returning", experiment_name="x", cwd=str(workdir)
    )
    assert spec.trainable_ref == f"{name}:returning"


def test_python_objects_are_not_references(workdir: Path) -> None:
    import pandas as pd

    from radas_flows.driver import main

    # A Python caller passing objects decides for itself: nothing is refused.
    args = spec_arguments({"process_df_fn": pd.DataFrame.head}, cwd=str(workdir))
    assert args["process_df_fn"] is pd.DataFrame.head
    assert build_spec(user_name="u", trainable=main, experiment_name="x").trainable is main


def test_the_cluster_driver_resolves_the_reference_it_was_given(workdir: Path) -> None:
    from radas_flows.driver import resolve_trainable

    # The driver spec is written by radas itself (from an object of an installed package, say):
    # the job resolves its reference without the parameter rule.
    assert resolve_trainable("tests.trainables_for_tests:returning").__name__ == "returning"


def test_kwargs_of_a_hook_reach_it_as_plain_data(workdir: Path) -> None:
    name = f"echo_{uuid.uuid4().hex[:8]}"
    (workdir / f"{name}.py").write_text("def echo(df, **kwargs):\n    return kwargs\n")
    kwargs = {"expr": "@os.system('id')", "nested": {"eval": "__import__('os')"}}
    args = spec_arguments(
        {"process_df_fn": f"{name}:echo", "process_df_fn_kwargs": kwargs}, cwd=str(workdir)
    )
    assert args["process_df_fn_kwargs"] == kwargs
    assert args["process_df_fn"](None, **args["process_df_fn_kwargs"]) == kwargs


# ---------------------------------------------------------------------------------------------
# rcParams are plain settings: none that imports a module or runs a program
# ---------------------------------------------------------------------------------------------

_PLOT_WITH_RC_PARAMS = """
import json, sys
import pandas as pd
import seaborn
from radas_flows.analysis import analyze_results
from radas_flows.inputs.flow_params import spec_arguments
from radas_flows.inputs.spec import build_spec

parameters = spec_arguments(json.loads(sys.argv[1]), cwd=sys.argv[2])
spec = build_spec(
    user_name="u", trainable=lambda c: {}, experiment_name="x", cwd=sys.argv[2],
    tuner_to_df_fn=lambda tuner: pd.DataFrame({"a": [1, 2], "b": [3, 4]}),
    plot_fn=seaborn.lineplot, plot_kwargs={"x": "a", "y": "b"}, **parameters,
)
try:
    analyze_results(None, spec.analysis, None)
except Exception as e:
    print(type(e).__name__, e)
"""


@pytest.mark.parametrize(
    "rc",
    [
        {"backend": "module://{probe}"},
        {"backend_fallback": True, "backend": "module://{probe}"},
    ],
)
def test_rc_params_from_json_import_no_module(
    tmp_path: Path, workdir: Path, rc: dict[str, Any]
) -> None:
    import subprocess
    import sys

    probe = f"rc_probe_{uuid.uuid4().hex[:8]}"
    marker = tmp_path / "IMPORTED"
    elsewhere = tmp_path / "site"  # a module anywhere on the path: site-packages, say
    elsewhere.mkdir()
    (elsewhere / f"{probe}.py").write_text(
        f"open({str(marker)!r}, 'w').write('imported')\nFigureCanvas = None\n"
    )
    parameters = {
        "matplotlib_rcParams_update": {
            key: value.format(probe=probe) if isinstance(value, str) else value
            for key, value in rc.items()
        }
    }
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(elsewhere)]),
        "MPLBACKEND": "Agg",  # a headless worker; pyplot picks its backend at the first figure
    }
    done = subprocess.run(
        [sys.executable, "-c", _PLOT_WITH_RC_PARAMS, json.dumps(parameters), str(workdir)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert not marker.exists(), f"rcParams imported {probe}: {done.stdout}{done.stderr}"
    assert "matplotlib_rcParams_update['backend" in done.stderr, done.stderr
    assert "process_sns_fn" in done.stderr  # where a project sets such settings itself


@pytest.mark.parametrize(
    "key", ["backend", "animation.ffmpeg_path", "pgf.texsystem", "text.latex.preamble"]
)
def test_rc_params_that_name_code_or_programs_are_refused(key: str) -> None:
    with pytest.raises(ParameterError, match=rf"matplotlib_rcParams_update\['{key}'\]"):
        build_spec(
            user_name="u",
            trainable=lambda c: {},
            experiment_name="x",
            matplotlib_rcParams_update={key: "x", "figure.figsize": [7, 4.5]},
        )
    spec = build_spec(
        user_name="u",
        trainable=lambda c: {},
        experiment_name="x",
        matplotlib_rcParams_update={"figure.figsize": [7, 4.5], "font.size": 9},
    )
    assert spec.analysis.matplotlib_rcParams_update == {"figure.figsize": [7, 4.5], "font.size": 9}


def test_a_namespace_package_resolves_only_its_project_modules(
    workdir: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = f"ns_{uuid.uuid4().hex[:8]}"
    (workdir / name).mkdir()
    (workdir / name / "mine.py").write_text("def hook(df):\n    return df\n")
    elsewhere = tmp_path_factory.mktemp("elsewhere")  # not under the working directory
    (elsewhere / name).mkdir(parents=True)
    (elsewhere / name / "theirs.py").write_text("def hook(df):\n    return df\n")
    monkeypatch.syspath_prepend(str(elsewhere))
    assert resolve_callable_reference(f"{name}.mine:hook", field="process_df_fn", cwd=workdir)
    with pytest.raises(ParameterError, match=r"outside the run's working directory"):
        resolve_callable_reference(f"{name}.theirs:hook", field="process_df_fn", cwd=workdir)
