"""Tests for the JSON experiment parameters: grammar, settings models, builders, trainables."""

from __future__ import annotations

import dataclasses
import json
import math
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from radas_flows.inputs.plot_settings import (
    FIGURE_LEVEL_PLOT_FUNCTIONS,
    SEABORN_PLOT_FUNCTIONS,
    PlotSettings,
    resolve_plot_fn,
)
from radas_flows.inputs.references import (
    TrainableReference,
    resolve_trainable_reference,
    validate_trainable_reference,
)
from radas_flows.inputs.rules import ParameterError, supported_plot_formats
from radas_flows.inputs.search import (
    SCHEDULER_NAMES,
    SEARCH_ALG_NAMES,
    build_scheduler,
    build_search_alg,
    check_search_space,
)
from radas_flows.inputs.space import (
    PARAM_SPACE_GRAMMAR,
    PARAM_SPACE_WORDS,
    ParamSpace,
    describe_param_space,
    parse_param_space,
    validate_param_space,
)
from radas_flows.inputs.tuner_settings import TunerSettings, build_tuner_init_kwargs

REPO = Path(__file__).resolve().parents[1]


def _samples(domain: Any, n: int = 300) -> list[Any]:
    values = domain.sample(size=n, random_state=0)
    return list(values)


# ---------------------------------------------------------------------------------------------
# Grammar: each form builds the right Tune domain
# ---------------------------------------------------------------------------------------------


def test_uniform_is_a_float_domain_sampling_inside_its_bounds() -> None:
    from ray.tune.search.sample import Float, Uniform

    domain = parse_param_space({"x": {"uniform": [-2, 3]}})["x"]
    assert isinstance(domain, Float)
    assert isinstance(domain.get_sampler(), Uniform)
    assert (domain.lower, domain.upper) == (-2, 3)
    values = _samples(domain)
    assert all(-2 <= v < 3 for v in values)
    assert min(values) < -1 and max(values) > 2  # spread over the range, not a constant


def test_loguniform_samples_across_orders_of_magnitude() -> None:
    from ray.tune.search.sample import Float, LogUniform

    domain = parse_param_space({"lr": {"loguniform": [1e-5, 1e-1]}})["lr"]
    assert isinstance(domain, Float)
    assert isinstance(domain.get_sampler(), LogUniform)
    values = _samples(domain)
    assert all(1e-5 <= v <= 1e-1 for v in values)
    # log-uniform: about a quarter of the draws fall in each decade
    assert sum(v < 1e-4 for v in values) > 40


def test_quniform_values_are_multiples_of_q_with_inclusive_upper() -> None:
    from ray.tune.search.sample import Float, Quantized

    domain = parse_param_space({"x": {"quniform": [0, 1, 0.25]}})["x"]
    assert isinstance(domain, Float)
    assert isinstance(domain.sampler, Quantized) and domain.sampler.q == 0.25
    values = _samples(domain)
    assert set(values) <= {0.0, 0.25, 0.5, 0.75, 1.0}
    assert len(set(values)) >= 4


def test_qloguniform_is_quantized_log_uniform() -> None:
    from ray.tune.search.sample import LogUniform, Quantized

    domain = parse_param_space({"x": {"qloguniform": [1, 1000, 1]}})["x"]
    assert isinstance(domain.sampler, Quantized)
    assert isinstance(domain.sampler.get_sampler(), LogUniform)
    values = _samples(domain)
    assert all(1 <= v <= 1000 and float(v).is_integer() for v in values)


def test_randint_is_an_integer_domain_with_exclusive_upper() -> None:
    from ray.tune.search.sample import Integer

    domain = parse_param_space({"n": {"randint": [2, 5]}})["n"]
    assert isinstance(domain, Integer)
    assert (domain.lower, domain.upper) == (2, 5)
    values = _samples(domain)
    assert set(values) == {2, 3, 4}
    assert isinstance(domain.sample(random_state=1), int)


def test_qrandint_values_are_multiples_of_q_with_inclusive_upper() -> None:
    from ray.tune.search.sample import Integer

    domain = parse_param_space({"n": {"qrandint": [0, 20, 5]}})["n"]
    assert isinstance(domain, Integer)
    assert set(_samples(domain)) == {0, 5, 10, 15, 20}


def test_lograndint_and_qlograndint_are_integer_log_domains() -> None:
    from ray.tune.search.sample import Integer, LogUniform, Quantized

    space = parse_param_space({"a": {"lograndint": [1, 1000]}, "b": {"qlograndint": [2, 64, 2]}})
    assert isinstance(space["a"], Integer) and isinstance(space["a"].sampler, LogUniform)
    assert all(1 <= v < 1000 for v in _samples(space["a"]))
    assert isinstance(space["b"].sampler, Quantized) and space["b"].sampler.q == 2
    assert all(v % 2 == 0 and 2 <= v <= 64 for v in _samples(space["b"]))


def test_randn_and_qrandn_are_normal_domains() -> None:
    from ray.tune.search.sample import Normal, Quantized

    space = parse_param_space({"a": {"randn": [10, 2]}, "b": {"qrandn": [0, 1, 0.5]}})
    sampler = space["a"].get_sampler()
    assert isinstance(sampler, Normal) and (sampler.mean, sampler.sd) == (10, 2)
    values = _samples(space["a"], 2000)
    assert abs(sum(values) / len(values) - 10) < 0.3
    assert isinstance(space["b"].sampler, Quantized)
    assert all(math.isclose(v / 0.5, round(v / 0.5)) for v in _samples(space["b"]))


def test_choice_is_a_categorical_over_literal_values() -> None:
    from ray.tune.search.sample import Categorical

    categories = ["adam", "sgd", {"uniform": [0, 1]}]
    domain = parse_param_space({"opt": {"choice": categories}})["opt"]
    assert isinstance(domain, Categorical)
    assert domain.categories == categories  # values inside choice stay literal
    assert {json.dumps(v) for v in _samples(domain)} == {json.dumps(c) for c in categories}


def test_grid_search_becomes_tunes_grid_search() -> None:
    from ray import tune

    space = parse_param_space({"depth": {"grid_search": [2, 4, 8]}})
    assert space["depth"] == tune.grid_search([2, 4, 8])


def test_nested_dicts_lists_and_plain_values() -> None:
    from ray.tune.search.sample import Categorical, Float

    raw = {
        "model": {"lr": {"uniform": [0, 1]}, "layers": [64, {"choice": [32, 64]}], "act": "relu"},
        "epochs": 3,
        "flag": True,
        "nothing": None,
        "tags": ["a", "b"],
        "two_keys": {"uniform": [0, 1], "note": "a dict with two keys is a plain dict"},
        "uniformm": {"uniformm": [0, 1]},
    }
    before = json.dumps(raw, sort_keys=True)
    space = parse_param_space(raw)
    assert isinstance(space["model"]["lr"], Float)
    assert space["model"]["layers"][0] == 64
    assert isinstance(space["model"]["layers"][1], Categorical)
    assert space["model"]["act"] == "relu"
    assert (space["epochs"], space["flag"], space["nothing"], space["tags"]) == (
        3,
        True,
        None,
        ["a", "b"],
    )
    assert isinstance(space["two_keys"]["uniform"], list)
    # a single-key dict whose key is not a grammar word (a typo too) stays a plain dict
    assert space["uniformm"] == {"uniformm": [0, 1]}
    assert json.dumps(raw, sort_keys=True) == before  # the input is not modified


def test_parsing_is_idempotent_and_passes_tune_objects_through() -> None:
    from ray import tune

    lr = tune.loguniform(1e-4, 1e-1)
    once = parse_param_space({"lr": lr, "x": {"uniform": [0, 1]}, "g": {"grid_search": [1]}})
    twice = parse_param_space(once)
    assert twice["lr"] is lr
    assert twice["x"] is once["x"]
    assert twice["g"] == {"grid_search": [1]}


def test_empty_space_is_allowed() -> None:
    assert parse_param_space({}) == {}
    assert validate_param_space({}) == {}


# ---------------------------------------------------------------------------------------------
# Grammar errors name the path and quote the grammar
# ---------------------------------------------------------------------------------------------

BAD_SPACES = [
    ({"x": {"uniform": [1]}}, r"param_space\.x: \"uniform\" takes \[lo, hi\] \(2 values\)"),
    ({"x": {"uniform": [0, 1, 2]}}, r"param_space\.x: \"uniform\" takes \[lo, hi\]"),
    ({"x": {"uniform": [1, 1]}}, r"param_space\.x: \"uniform\" needs lo < hi, got \[1, 1\]"),
    ({"x": {"uniform": [2, 1]}}, r"needs lo < hi"),
    ({"x": {"uniform": "0,1"}}, r"param_space\.x: \"uniform\" takes a list \[lo, hi\]"),
    ({"x": {"uniform": ["0", 1]}}, r"\"uniform\" takes \[lo, hi\] as numbers"),
    ({"x": {"uniform": [True, 2]}}, r"as numbers"),
    ({"x": {"uniform": [0, float("inf")]}}, r"as numbers"),
    ({"x": {"uniform": [float("nan"), 1]}}, r"as numbers"),
    ({"x": {"loguniform": [0, 1]}}, r"param_space\.x: \"loguniform\" .*needs 0 < lo"),
    ({"x": {"loguniform": [-1, 1]}}, r"needs 0 < lo"),
    ({"x": {"qloguniform": [0, 10, 1]}}, r"\"qloguniform\" .*needs 0 < lo"),
    ({"x": {"lograndint": [0, 10]}}, r"\"lograndint\" .*needs 0 < lo"),
    ({"x": {"quniform": [0, 1]}}, r"\"quniform\" takes \[lo, hi, q\] \(3 values\)"),
    ({"x": {"quniform": [0, 1, 0]}}, r"\"quniform\" needs q > 0"),
    ({"x": {"quniform": [0, 1, 0.3]}}, r"\"quniform\" needs lo and hi to be multiples of q"),
    ({"x": {"randint": [0.5, 10]}}, r"\"randint\" takes \[lo, hi\] as integers"),
    ({"x": {"randint": [0, 10.0]}}, r"as integers"),
    ({"x": {"randint": [5, 5]}}, r"\"randint\" needs lo < hi"),
    ({"x": {"qrandint": [1, 4, 5]}}, r"\"qrandint\" has no multiple of q between lo and hi"),
    ({"x": {"qrandint": [0, 10, 0]}}, r"\"qrandint\" needs q > 0"),
    ({"x": {"randn": [0, 0]}}, r"\"randn\" needs sd > 0"),
    ({"x": {"randn": [0]}}, r"\"randn\" takes \[mean, sd\]"),
    ({"x": {"qrandn": [0, 1, -1]}}, r"\"qrandn\" needs q > 0"),
    ({"x": {"choice": []}}, r"param_space\.x: \"choice\" needs at least one value"),
    ({"x": {"choice": "abc"}}, r"\"choice\" takes a list \[v1, v2, \.\.\.\]"),
    ({"x": {"grid_search": []}}, r"\"grid_search\" needs at least one value"),
    ({"x": {"grid_search": 3}}, r"\"grid_search\" takes a list"),
    (
        {"x": {"Uniform": [0, 1]}},
        r"unknown search-space word \"Uniform\"; did you mean \"uniform\"",
    ),
    ({"x": {"grid-search": [1]}}, r"did you mean \"grid_search\""),
    ({"x": {"GridSearch": [1]}}, r"did you mean \"grid_search\""),
    ({"x": {"sample_from": "lambda c: 1"}}, r"param_space\.x: \"sample_from\" needs a Python"),
    ({"model": {"lr": {"loguniform": [0, 1]}}}, r"param_space\.model\.lr: \"loguniform\""),
    ({"layers": [16, {"choice": []}]}, r"param_space\.layers\[1\]: \"choice\""),
    ({"a": [{"b": [{"c": {"randint": [1]}}]}]}, r"param_space\.a\[0\]\.b\[0\]\.c: \"randint\""),
    ({"uniform": [0, 1]}, r"param_space: must be an object of named parameters"),
]


@pytest.mark.parametrize(("space", "match"), BAD_SPACES)
def test_parse_errors_name_the_path(space: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match) as info:
        parse_param_space(space)
    assert "param_space grammar:" in str(info.value)


@pytest.mark.parametrize(("space", "match"), BAD_SPACES)
def test_validate_reports_the_same_errors_as_parse(space: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        validate_param_space(space)


@pytest.mark.parametrize("obj", [[1, 2], "lr", 3, None])
def test_space_must_be_an_object(obj: Any) -> None:
    with pytest.raises(ParameterError, match=r"param_space: must be a JSON object of parameters"):
        parse_param_space(obj)


def test_error_path_root_is_configurable() -> None:
    with pytest.raises(ParameterError, match=r"^mutations\.lr: \"uniform\""):
        parse_param_space({"lr": {"uniform": [1, 0]}}, path="mutations")


def test_parameter_error_is_a_value_error() -> None:
    assert issubclass(ParameterError, ValueError)


def test_grammar_text_lists_every_word() -> None:
    for word in PARAM_SPACE_WORDS:
        assert f'"{word}"' in PARAM_SPACE_GRAMMAR


def test_module_import_and_validation_do_not_import_ray_seaborn_or_matplotlib() -> None:
    code = textwrap.dedent(
        """
        import sys
        import radas_flows.inputs.flow_params
        import radas_flows.inputs.spec
        from radas_flows.inputs import references, space, tuner_settings
        space.validate_param_space({"x": {"uniform": [0, 1]}, "y": {"grid_search": [1, 2]}})
        tuner_settings.TunerSettings(
            metric="score", mode="max", search_alg="optuna", scheduler="asha"
        )
        references.validate_trainable_reference("train:trainable")
        heavy = [m for m in ("ray", "seaborn", "matplotlib") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO, timeout=120)


# ---------------------------------------------------------------------------------------------
# describe_param_space: Tune objects back to the grammar
# ---------------------------------------------------------------------------------------------

ALL_FORMS = {
    "a": {"uniform": [0, 1]},
    "b": {"quniform": [0, 10, 2]},
    "c": {"loguniform": [1e-4, 1e-1]},
    "d": {"qloguniform": [1, 100, 1]},
    "e": {"randint": [0, 10]},
    "f": {"qrandint": [0, 10, 5]},
    "g": {"lograndint": [1, 100]},
    "h": {"qlograndint": [1, 100, 3]},
    "i": {"randn": [0, 1]},
    "j": {"qrandn": [0, 1, 0.5]},
    "k": {"grid_search": [1, "two", {"three": 3}]},
    "l": {"choice": ["x", "y"]},
    "m": {"n": {"o": {"uniform": [1, 2]}}},
    "p": [1, {"choice": [1, 2]}],
    "q": "plain",
}


def test_describe_inverts_parse_for_every_form() -> None:
    described = describe_param_space(parse_param_space(ALL_FORMS))
    assert described == ALL_FORMS
    assert json.loads(json.dumps(described)) == ALL_FORMS


def test_describe_a_python_built_space() -> None:
    import numpy as np
    from ray import tune
    from ray.tune.search.sample import Categorical

    def pick(config: dict[str, Any]) -> int:
        return 1

    space = {
        "lr": tune.loguniform(1e-4, 1e-1),
        "n": tune.qrandint(0, 20, 5),
        "act": tune.choice(["relu", "tanh"]),
        "grid": tune.grid_search([1, 2]),
        "grid_domain": Categorical([3, 4]).grid(),
        "fn": tune.sample_from(pick),
        "np": np.float32(1.5),
        "arr": np.array([1, 2]),
        "tuple": (1, 2),
        "nested": {"w": tune.randn(0, 2)},
    }
    assert describe_param_space(space) == {
        "lr": {"loguniform": [1e-4, 1e-1]},
        "n": {"qrandint": [0, 20, 5]},
        "act": {"choice": ["relu", "tanh"]},
        "grid": {"grid_search": [1, 2]},
        "grid_domain": {"grid_search": [3, 4]},
        "fn": {"sample_from": "test_describe_a_python_built_space.<locals>.pick"},
        "np": 1.5,
        "arr": [1, 2],
        "tuple": [1, 2],
        "nested": {"w": {"randn": [0, 2]}},
    }


def test_described_sample_from_is_rejected_when_parsed_back() -> None:
    from ray import tune

    described = describe_param_space({"fn": tune.sample_from(lambda config: 1)})
    with pytest.raises(ParameterError, match=r"param_space\.fn: \"sample_from\""):
        parse_param_space(described)


# ---------------------------------------------------------------------------------------------
# Search algorithms and schedulers by name
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("basic", "BasicVariantGenerator"),
        ("variant_generator", "BasicVariantGenerator"),
        ("random", "BasicVariantGenerator"),
        ("optuna", "OptunaSearch"),
        ("hyperopt", "HyperOptSearch"),
        ("Optuna", "OptunaSearch"),
    ],
)
def test_search_alg_by_name(name: str, class_name: str) -> None:
    alg = build_search_alg(name, {})
    assert type(alg).__name__ == class_name


def test_search_alg_names_cover_the_registry() -> None:
    assert set(SEARCH_ALG_NAMES) == {
        "basic",
        "variant_generator",
        "random",
        "optuna",
        "hyperopt",
        "bayesopt",
    }


def test_search_alg_receives_kwargs_metric_and_mode() -> None:
    alg = build_search_alg("optuna", {"seed": 7}, metric="score", mode="max")
    assert alg.metric == "score"
    assert alg.mode == "max"
    assert alg._seed == 7
    hyper = build_search_alg("hyperopt", {"n_initial_points": 3, "random_state_seed": 1})
    assert hyper.algo.keywords["n_startup_jobs"] == 3
    basic = build_search_alg("basic", {"max_concurrent": 2}, metric="score", mode="max")
    assert basic.max_concurrent == 2


def test_no_search_alg_is_none() -> None:
    assert build_search_alg(None, None) is None
    assert build_search_alg(None, {}) is None
    with pytest.raises(ParameterError, match=r"search_alg_kwargs: given without search_alg"):
        build_search_alg(None, {"seed": 1})


def test_unknown_search_alg_lists_the_names() -> None:
    with pytest.raises(ParameterError, match=r"search_alg: unknown name 'optunaa'.*'optuna'") as e:
        build_search_alg("optunaa", {})
    assert 'Did you mean "optuna"' in str(e.value)
    for name in SEARCH_ALG_NAMES:
        assert repr(name) in str(e.value)


def test_search_alg_unknown_kwarg_lists_accepted_ones() -> None:
    with pytest.raises(
        ParameterError, match=r"search_alg_kwargs\.seeds: OptunaSearch has no argument 'seeds'"
    ) as e:
        build_search_alg("optuna", {"seeds": 1})
    assert "'seed'" in str(e.value) and "'points_to_evaluate'" in str(e.value)


@pytest.mark.parametrize(
    ("key", "match"),
    [
        ("metric", r"search_alg_kwargs\.metric: not allowed here; set TunerSettings\.metric"),
        ("mode", r"search_alg_kwargs\.mode: not allowed here; set TunerSettings\.mode"),
        ("space", r"search_alg_kwargs\.space: .*comes from param_space"),
        ("sampler", r"search_alg_kwargs\.sampler: .*Python object"),
    ],
)
def test_search_alg_reserved_kwargs(key: str, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        build_search_alg("optuna", {key: "x"})


@pytest.mark.parametrize(
    ("name", "package", "install"),
    [
        ("optuna", "optuna", "pip install 'radas-flows[search]'"),
        ("hyperopt", "hyperopt", "pip install 'radas-flows[search]'"),
        ("bayesopt", "bayes_opt", "pip install bayesian-optimization"),
    ],
)
def test_missing_optional_package_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, name: str, package: str, install: str
) -> None:
    # Uninstalling packages from the shared environment is not an option; a None entry in
    # sys.modules makes `import <package>` raise ImportError exactly as a missing package does.
    monkeypatch.setitem(sys.modules, package, None)
    with pytest.raises(ParameterError, match=rf"needs the '{package}' package") as e:
        build_search_alg(name, {})
    assert f"`{install}`" in str(e.value)
    assert isinstance(e.value.__cause__, ImportError)


def test_search_alg_constructor_errors_are_wrapped() -> None:
    with pytest.raises(
        ParameterError, match=r"search_alg_kwargs: BasicVariantGenerator\(.*\) failed: SeedSeq"
    ) as e:
        build_search_alg("basic", {"random_state": "not a seed"})
    assert isinstance(e.value.__cause__, TypeError)


@pytest.mark.parametrize(
    ("name", "class_name"),
    [
        ("fifo", "FIFOScheduler"),
        ("asha", "AsyncHyperBandScheduler"),
        ("async_hyperband", "AsyncHyperBandScheduler"),
        ("hyperband", "HyperBandScheduler"),
        ("median_stopping", "MedianStoppingRule"),
        ("median_stopping_rule", "MedianStoppingRule"),
        ("ASHA", "AsyncHyperBandScheduler"),
    ],
)
def test_scheduler_by_name(name: str, class_name: str) -> None:
    assert type(build_scheduler(name, {})).__name__ == class_name


def test_scheduler_receives_kwargs_metric_and_mode() -> None:
    asha = build_scheduler(
        "asha", {"max_t": 50, "grace_period": 5, "reduction_factor": 3}, metric="loss", mode="min"
    )
    assert (asha._max_t, asha._metric, asha._mode) == (50, "loss", "min")
    assert asha._brackets[0].rf == 3
    median = build_scheduler("median_stopping", {"grace_period": 2.5, "min_samples_required": 2})
    assert median._grace_period == 2.5
    assert build_scheduler("fifo", {}, metric="loss", mode="min") is not None


def test_pbt_mutations_use_the_grammar() -> None:
    from ray.tune.search.sample import Categorical, Float

    pbt = build_scheduler(
        "pbt",
        {
            "perturbation_interval": 2,
            "hyperparam_mutations": {
                "lr": {"loguniform": [1e-4, 1e-1]},
                "batch": [16, 32, 64],
                "opt": {"momentum": {"choice": [0.8, 0.9]}},
            },
        },
        metric="score",
        mode="max",
    )
    mutations = pbt._hyperparam_mutations
    assert isinstance(mutations["lr"], Float)
    assert mutations["batch"] == [16, 32, 64]
    assert isinstance(mutations["opt"]["momentum"], Categorical)
    assert pbt._perturbation_interval == 2


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({}, r"scheduler_kwargs\.hyperparam_mutations: PBT needs a non-empty object"),
        ({"hyperparam_mutations": {}}, r"PBT needs a non-empty object"),
        ({"hyperparam_mutations": [1, 2]}, r"PBT needs a non-empty object"),
        (
            {"hyperparam_mutations": {"lr": {"uniform": [1, 0]}}},
            r"scheduler_kwargs\.hyperparam_mutations\.lr: \"uniform\" needs lo < hi",
        ),
        (
            {"hyperparam_mutations": {"lr": {"grid_search": [1, 2]}}},
            r"scheduler_kwargs\.hyperparam_mutations: PBT cannot mutate a grid_search",
        ),
        (
            {"hyperparam_mutations": {"lr": [1, 2]}, "quantile_fraction": 0.9},
            r"scheduler_kwargs: PopulationBasedTraining\(.*\) failed: .*quantile_fraction",
        ),
        (
            {"hyperparam_mutations": {"lr": [1, 2]}, "custom_explore_fn": "f"},
            r"scheduler_kwargs\.custom_explore_fn: .*Python object",
        ),
    ],
)
def test_pbt_errors(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        build_scheduler("pbt", kwargs)


def test_scheduler_errors() -> None:
    with pytest.raises(ParameterError, match=r"scheduler: unknown name 'ashaa'.*Did you mean"):
        build_scheduler("ashaa", {})
    with pytest.raises(ParameterError, match=r"scheduler_kwargs\.max_tt: .*no argument 'max_tt'"):
        build_scheduler("asha", {"max_tt": 3})
    with pytest.raises(ParameterError, match=r"scheduler_kwargs: ASHAScheduler\(.*\) failed"):
        build_scheduler("asha", {"max_t": 0})
    with pytest.raises(ParameterError, match=r"scheduler_kwargs\.mode: not allowed here"):
        build_scheduler("hyperband", {"mode": "max"})
    with pytest.raises(ParameterError, match=r"scheduler_kwargs: given without scheduler"):
        build_scheduler(None, {"max_t": 3})
    assert build_scheduler(None, None) is None
    assert set(SCHEDULER_NAMES) >= {"fifo", "asha", "hyperband", "median_stopping", "pbt"}


def test_check_search_space_compatibility() -> None:
    check_search_space(None, {"x": {"grid_search": [1]}})
    check_search_space("basic", {"x": {"grid_search": [1]}, "y": {"randn": [0, 1]}})
    check_search_space("optuna", {"x": {"uniform": [0, 1]}, "n": {"randint": [1, 4]}, "c": 3})
    check_search_space("hyperopt", {"x": {"randn": [0, 1]}, "c": {"choice": [1, 2]}})
    check_search_space("optuna", {})
    with pytest.raises(ParameterError, match=r"param_space: search_alg 'optuna' cannot use .*Grid"):
        check_search_space("optuna", {"x": {"grid_search": [1, 2]}})
    with pytest.raises(ParameterError, match=r"search_alg 'hyperopt' cannot use .*Grid"):
        check_search_space("hyperopt", {"m": {"x": {"grid_search": [1, 2]}}})
    with pytest.raises(ParameterError, match=r"search_alg 'optuna' cannot use .*_Normal"):
        check_search_space("optuna", {"x": {"randn": [0, 1]}})
    with pytest.raises(ParameterError, match=r"param_space\.x: \"uniform\" needs lo < hi"):
        check_search_space("optuna", {"x": {"uniform": [1, 0]}})


# ---------------------------------------------------------------------------------------------
# TunerSettings
# ---------------------------------------------------------------------------------------------


def test_tuner_settings_defaults() -> None:
    settings = TunerSettings()
    assert settings.num_samples == 1
    assert settings.metric is None and settings.mode is None
    assert settings.search_alg is None and settings.scheduler is None
    assert settings.search_alg_kwargs == {} and settings.scheduler_kwargs == {}
    assert settings.stop is None and settings.time_budget_s is None
    assert settings.reuse_actors is None  # the driver's default decides


def test_tuner_settings_from_json() -> None:
    raw = {
        "num_samples": 8,
        "metric": "score",
        "mode": "max",
        "max_concurrent_trials": 2,
        "search_alg": "optuna",
        "search_alg_kwargs": {"seed": 3},
        "scheduler": "asha",
        "scheduler_kwargs": {"max_t": 10},
        "stop": {"training_iteration": 10, "score": 0.5},
        "time_budget_s": 60,
    }
    settings = TunerSettings.model_validate_json(json.dumps(raw))
    assert settings.model_dump(exclude={"reuse_actors"}) == raw
    assert TunerSettings.model_validate(settings.model_dump()) == settings


@pytest.mark.parametrize(
    ("raw", "loc", "match"),
    [
        ({"num_samples": 0}, "num_samples", r"greater than or equal to 1"),
        ({"mode": "maximize"}, "mode", r"'min' or 'max'"),
        ({"metric": "score"}, None, r"metric is set without mode: set both"),
        ({"mode": "max"}, None, r"mode is set without metric: set both"),
        ({"metric": ""}, "metric", r"at least 1 character"),
        ({"search_alg": "optuna"}, None, r"search_alg 'optuna' needs metric and mode"),
        ({"search_alg": "hyperopt"}, None, r"search_alg 'hyperopt' needs metric and mode"),
        ({"scheduler": "asha"}, None, r"scheduler 'asha' needs metric and mode"),
        ({"scheduler": "pbt"}, None, r"scheduler 'pbt' needs metric and mode"),
        ({"search_alg": "nevergrad"}, "search_alg", r"'basic', 'variant_generator'"),
        ({"scheduler": "pb2"}, "scheduler", r"'fifo', 'asha'"),
        ({"search_alg_kwargs": {"seed": 1}}, None, r"search_alg_kwargs is set without search_alg"),
        ({"scheduler_kwargs": {"max_t": 1}}, None, r"scheduler_kwargs is set without scheduler"),
        (
            {"search_alg": "basic", "search_alg_kwargs": {"metric": "x"}},
            "search_alg_kwargs",
            r"'metric' is not allowed here; set TunerSettings\.metric",
        ),
        (
            {"scheduler": "fifo", "scheduler_kwargs": {"mode": "max"}},
            "scheduler_kwargs",
            r"'mode' is not allowed here",
        ),
        ({"stop": {"training_iteration": True}}, "stop", r"stop\.training_iteration: .*finite"),
        ({"stop": {"loss": float("nan")}}, "stop", r"stop\.loss: the threshold must be a finite"),
        ({"stop": {"loss": "low"}}, "stop", r"valid (integer|number)"),
        ({"stop": {"": 1}}, "stop", r"empty metric name"),
        ({"time_budget_s": 0}, "time_budget_s", r"greater than 0"),
        ({"max_concurrent_trials": 0}, "max_concurrent_trials", r"greater than or equal to 1"),
        ({"num_sample": 3}, "num_sample", r"Extra inputs are not permitted"),
    ],
)
def test_tuner_settings_errors(raw: dict[str, Any], loc: str | None, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        TunerSettings.model_validate(raw)
    if loc is not None:
        assert info.value.errors()[0]["loc"][0] == loc


def test_basic_search_and_fifo_need_no_metric() -> None:
    settings = TunerSettings(search_alg="basic", scheduler="fifo", num_samples=3)
    assert settings.search_alg == "basic"


def test_build_tuner_init_kwargs_makes_tune_configs() -> None:
    from ray import tune
    from ray.tune.schedulers import AsyncHyperBandScheduler
    from ray.tune.search.optuna import OptunaSearch

    settings = TunerSettings(
        num_samples=5,
        metric="score",
        mode="max",
        max_concurrent_trials=2,
        search_alg="optuna",
        search_alg_kwargs={"seed": 1},
        scheduler="asha",
        scheduler_kwargs={"max_t": 4},
        stop={"training_iteration": 4},
        time_budget_s=30,
        reuse_actors=False,
    )
    kwargs = build_tuner_init_kwargs(settings)
    assert set(kwargs) == {"tune_config", "run_config"}
    config, run = kwargs["tune_config"], kwargs["run_config"]
    assert type(config) is tune.TuneConfig
    assert type(run) is tune.RunConfig
    assert (config.metric, config.mode, config.num_samples) == ("score", "max", 5)
    assert (config.max_concurrent_trials, config.time_budget_s) == (2, 30)
    assert config.reuse_actors is False
    assert isinstance(config.search_alg, OptunaSearch)
    assert config.search_alg.metric is None  # TuneConfig hands the metric on
    assert isinstance(config.scheduler, AsyncHyperBandScheduler)
    assert run.stop == {"training_iteration": 4}


def test_build_tuner_init_kwargs_defaults_and_space_check() -> None:
    kwargs = build_tuner_init_kwargs(TunerSettings())
    config = kwargs["tune_config"]
    assert config.search_alg is None and config.scheduler is None
    assert config.num_samples == 1 and config.reuse_actors is False  # driver default applies
    forced = build_tuner_init_kwargs(TunerSettings(reuse_actors=True))["tune_config"]
    assert forced.reuse_actors is True
    assert kwargs["run_config"].stop is None
    settings = TunerSettings(metric="s", mode="min", search_alg="optuna")
    build_tuner_init_kwargs(settings, param_space={"x": {"uniform": [0, 1]}})
    with pytest.raises(ParameterError, match=r"search_alg 'optuna' cannot use this search space"):
        build_tuner_init_kwargs(settings, param_space={"x": {"grid_search": [0, 1]}})


def test_build_tuner_init_kwargs_reports_bad_constructor_kwargs() -> None:
    settings = TunerSettings(
        metric="s", mode="min", search_alg="optuna", search_alg_kwargs={"seedd": 1}
    )
    with pytest.raises(ParameterError, match=r"search_alg_kwargs\.seedd: OptunaSearch has no"):
        build_tuner_init_kwargs(settings)


# ---------------------------------------------------------------------------------------------
# PlotSettings
# ---------------------------------------------------------------------------------------------


def test_plot_settings_defaults_and_format_normalization() -> None:
    plot = PlotSettings(fn="lineplot", kwargs={"x": "config/a", "y": "score"})
    assert (plot.fn, plot.format) == ("lineplot", "png")
    assert plot.kwargs == {"x": "config/a", "y": "score"}
    assert PlotSettings(fn="relplot", format=".SVG").format == "svg"
    assert PlotSettings(fn="heatmap", format=None).format is None
    assert PlotSettings.model_validate_json('{"fn": "boxplot", "format": "pdf"}').format == "pdf"


@pytest.mark.parametrize(
    ("raw", "loc", "match"),
    [
        ({"fn": "lineplt"}, "fn", r"Input should be 'relplot', 'scatterplot', 'lineplot'"),
        ({"fn": "show"}, "fn", r"Input should be"),
        ({}, "fn", r"Field required"),
        ({"fn": "lineplot", "format": "bmp"}, "format", r"'bmp' is not a format .*'png'"),
        ({"fn": "lineplot", "kwargs": [1]}, "kwargs", r"valid dictionary"),
        ({"fn": "lineplot", "size": 3}, "size", r"Extra inputs are not permitted"),
    ],
)
def test_plot_settings_errors(raw: dict[str, Any], loc: str, match: str) -> None:
    with pytest.raises(ValidationError, match=match) as info:
        PlotSettings.model_validate(raw)
    assert info.value.errors()[0]["loc"][0] == loc


def test_supported_formats_come_from_matplotlib() -> None:
    formats = supported_plot_formats()
    assert {"png", "svg", "pdf", "jpg"} <= set(formats)
    assert "bmp" not in formats


def test_every_allowed_plot_name_is_a_seaborn_function() -> None:
    import seaborn

    for name in SEABORN_PLOT_FUNCTIONS:
        assert resolve_plot_fn(name) is getattr(seaborn, name)
    assert set(FIGURE_LEVEL_PLOT_FUNCTIONS) <= set(SEABORN_PLOT_FUNCTIONS)


def test_figure_level_functions_return_grids() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    df = pd.DataFrame({"a": [1, 2, 3, 1, 2, 3], "score": [1.0, 2.0, 3.0, 1.5, 2.5, 3.5]})
    try:
        for name in ("relplot", "catplot", "lmplot", "displot"):
            kwargs = {"x": "a"} if name == "displot" else {"x": "a", "y": "score"}
            result = resolve_plot_fn(name)(data=df, **kwargs)
            assert hasattr(result, "figure"), name
        axes = resolve_plot_fn("lineplot")(data=df, x="a", y="score")
        assert axes.__class__.__name__ == "Axes"
    finally:
        plt.close("all")


def test_resolve_plot_fn_errors() -> None:
    with pytest.raises(
        ParameterError, match=r"plot fn: 'lineplt' is not .*Did you mean \"lineplot\""
    ):
        resolve_plot_fn("lineplt")
    with pytest.raises(ParameterError, match=r"plot fn: 'set_theme' is not a seaborn plotting"):
        resolve_plot_fn("set_theme")


# ---------------------------------------------------------------------------------------------
# Trainable references
# ---------------------------------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A run's working directory; sys.path and newly imported modules are restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("rf_"):
            del sys.modules[name]


def _module(directory: Path, source: str, package: str | None = None) -> str:
    name = f"rf_{uuid.uuid4().hex[:10]}"
    if package:
        (directory / package).mkdir(exist_ok=True)
        (directory / package / "__init__.py").write_text("")
        (directory / package / f"{name}.py").write_text(textwrap.dedent(source))
        return f"{package}.{name}"
    (directory / f"{name}.py").write_text(textwrap.dedent(source))
    return name


TRAINABLES = """
    from ray import tune

    def trainable(config):
        return {"score": config["x"]}

    class Namespace:
        @staticmethod
        def train(config):
            return {"score": 1}

    class MyTrainable(tune.Trainable):
        def step(self):
            return {"score": 1, "done": True}

    class NotTrainable:
        pass

    NUMBER = 3
    """


def test_resolve_function_trainable(workdir: Path) -> None:
    module = _module(workdir, TRAINABLES)
    fn = resolve_trainable_reference(f"{module}:trainable", cwd=workdir)
    assert fn({"x": 2}) == {"score": 2}
    assert fn.__module__ == module
    assert str(workdir) == sys.path[0]


def test_resolve_dotted_attribute_class_and_package(workdir: Path) -> None:
    from ray import tune

    module = _module(workdir, TRAINABLES)
    assert resolve_trainable_reference(f"{module}:Namespace.train", cwd=workdir)({}) == {"score": 1}
    cls = resolve_trainable_reference(f"{module}:MyTrainable", cwd=workdir)
    assert isinstance(cls, type) and issubclass(cls, tune.Trainable)
    packaged = _module(workdir, TRAINABLES, package=f"rf_pkg_{uuid.uuid4().hex[:6]}")
    assert resolve_trainable_reference(f"{packaged}:trainable", cwd=workdir)({"x": 5}) == {
        "score": 5
    }


def test_resolve_uses_current_directory_by_default(
    workdir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = _module(workdir, TRAINABLES)
    monkeypatch.chdir(workdir)
    assert resolve_trainable_reference(f"{module}:trainable")({"x": 1}) == {"score": 1}


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("train", r"trainable='train' is not a 'module:attribute' reference: it must have"),
        ("a:b:c", r"trainable='a:b:c' is not a 'module:attribute' reference"),
        ("train.py:fn", r"names a file, not a module: name the module instead, e\.g\. 'train:fn'"),
        ("src/train.py:fn", r"e\.g\. 'src\.train:fn'"),
        (":fn", r"invalid module ''"),
        ("train:", r"invalid attribute ''"),
        ("my-train:fn", r"invalid module 'my-train'"),
        ("train:fn()", r"invalid attribute 'fn\(\)'"),
    ],
)
def test_reference_syntax_errors(ref: str, match: str) -> None:
    with pytest.raises(ParameterError, match=match):
        validate_trainable_reference(ref)
    with pytest.raises(ParameterError, match=match):
        resolve_trainable_reference(ref)


def test_reference_errors_after_import(workdir: Path) -> None:
    module = _module(workdir, TRAINABLES)
    with pytest.raises(
        ParameterError,
        match=rf"module 'rf_missing_mod' cannot be imported: it is not in {workdir} \(the run's",
    ):
        resolve_trainable_reference("rf_missing_mod:trainable", cwd=workdir)
    with pytest.raises(ParameterError, match=rf"'{module}' has no attribute 'trainablee'") as e:
        resolve_trainable_reference(f"{module}:trainablee", cwd=workdir)
    assert "'trainable'" in str(e.value)  # lists what the module defines
    with pytest.raises(ParameterError, match=rf"'{module}\.Namespace' has no attribute 'nope'"):
        resolve_trainable_reference(f"{module}:Namespace.nope", cwd=workdir)
    with pytest.raises(ParameterError, match=r"'.*\.NUMBER' is a int, not a function"):
        resolve_trainable_reference(f"{module}:NUMBER", cwd=workdir)
    with pytest.raises(ParameterError, match=r"class NotTrainable is not a ray\.tune\.Trainable"):
        resolve_trainable_reference(f"{module}:NotTrainable", cwd=workdir)


def test_reference_errors_inside_the_module(workdir: Path) -> None:
    dependency = _module(workdir, "import rf_not_installed_dependency\n")
    with pytest.raises(
        ParameterError,
        match=rf"importing module '{dependency}' failed because 'rf_not_installed_dependency'",
    ):
        resolve_trainable_reference(f"{dependency}:f", cwd=workdir)
    broken = _module(workdir, "raise RuntimeError('boom at import')\n")
    with pytest.raises(ParameterError, match=r"raised RuntimeError: boom at import") as e:
        resolve_trainable_reference(f"{broken}:f", cwd=workdir)
    assert isinstance(e.value.__cause__, RuntimeError)
    syntax = _module(workdir, "def f(:\n")
    with pytest.raises(ParameterError, match=r"raised SyntaxError"):
        resolve_trainable_reference(f"{syntax}:f", cwd=workdir)


def test_module_from_cwd_is_pickled_by_value(workdir: Path) -> None:
    import ray.cloudpickle

    module = _module(workdir, TRAINABLES)
    fn = resolve_trainable_reference(f"{module}:trainable", cwd=workdir)
    payload = ray.cloudpickle.dumps(fn)
    # Unpickling in a process that cannot import the module proves the code travels by value.
    code = "import pickle, sys; f = pickle.loads(sys.stdin.buffer.read()); print(f({'x': 4}))"
    out = subprocess.run(
        [sys.executable, "-c", code], input=payload, capture_output=True, check=True, timeout=120
    )
    assert out.stdout.decode().strip() == "{'score': 4}"
    other = _module(workdir, TRAINABLES)
    by_ref = resolve_trainable_reference(f"{other}:trainable", cwd=workdir, pickle_by_value=False)
    assert other.encode() in ray.cloudpickle.dumps(by_ref)
    assert len(ray.cloudpickle.dumps(by_ref)) < len(payload)


# ---------------------------------------------------------------------------------------------
# Prefect: typed flow parameters render a schema and fail before a run starts
# ---------------------------------------------------------------------------------------------


def _example_flow() -> Any:
    from prefect import flow

    @flow(name="parameters-example")
    def sweep(
        trainable: TrainableReference,
        param_space: ParamSpace = {},  # noqa: B006 (the body never mutates it)
        tuner: TunerSettings = TunerSettings(),
        plot: PlotSettings | None = None,
    ) -> None:
        """Run a sweep.

        Args:
            trainable: The trainable as module:attribute.
            param_space: The search space.
            tuner: Tuner settings.
            plot: The figure.
        """

    return sweep


def test_prefect_parameter_schema_shows_fields(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(_example_flow()).model_dump()
    props = schema["properties"]
    assert schema["required"] == ["trainable"]
    assert props["trainable"]["type"] == "string"
    assert props["trainable"]["description"] == "The trainable as module:attribute."
    assert props["param_space"]["type"] == "object"
    assert props["param_space"]["examples"][0]["lr"] == {"loguniform": [1e-4, 1e-1]}
    tuner = schema["definitions"]["TunerSettings"]["properties"]
    assert tuner["search_alg"]["anyOf"][0]["enum"] == list(SEARCH_ALG_NAMES)
    assert tuner["scheduler"]["anyOf"][0]["enum"] == list(SCHEDULER_NAMES)
    assert tuner["num_samples"]["minimum"] == 1
    for field in tuner.values():
        assert field["description"] and field["examples"]
    plot = schema["definitions"]["PlotSettings"]["properties"]
    assert plot["fn"]["enum"] == list(SEABORN_PLOT_FUNCTIONS)
    assert all(field["description"] for field in plot.values())


def test_prefect_rejects_bad_parameters_naming_the_field(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from prefect.exceptions import ParameterTypeError

    sweep = _example_flow()
    good = sweep.validate_parameters(
        {
            "trainable": "train:trainable",
            "param_space": {"x": {"uniform": [0, 1]}},
            "tuner": {"num_samples": 2, "metric": "score", "mode": "max", "search_alg": "optuna"},
            "plot": {"fn": "lineplot", "kwargs": {"x": "config/x", "y": "score"}},
        }
    )
    assert isinstance(good["tuner"], TunerSettings) and good["tuner"].num_samples == 2
    assert isinstance(good["plot"], PlotSettings)
    assert good["param_space"] == {"x": {"uniform": [0, 1]}}
    with pytest.raises(ParameterTypeError) as info:
        sweep.validate_parameters(
            {
                "trainable": "train",
                "param_space": {"model": {"lr": {"loguniform": [0, 1]}}},
                "tuner": {"search_alg": "optuna"},
                "plot": {"fn": "lineplt", "format": "bmp"},
            }
        )
    message = str(info.value)
    assert "trainable: Value error, trainable='train' is not a 'module:attribute'" in message
    assert 'param_space.model.lr: "loguniform"' in message
    assert "tuner: Value error, search_alg 'optuna' needs metric and mode" in message
    assert "plot.fn: Input should be" in message
    assert "plot.format: Value error, 'bmp' is not a format" in message


# ---------------------------------------------------------------------------------------------
# Real Tune runs from JSON settings
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def local_ray() -> Any:
    import ray

    if ray.is_initialized():  # a local Ray of earlier tests in this session
        yield ray
        return
    from radas_flows.targets.local import _loopback_only

    with _loopback_only():  # on 127.0.0.1 only, as the product's local Ray
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


RUN_TRAINABLE = """
    from ray import tune

    def trainable(config):
        for step in range(1, 5):
            tune.report({"score": config["model"]["lr"] * step + config["bonus"]})
    """


def _fit(trainable: Any, space: dict[str, Any], settings: TunerSettings, storage: Path) -> Any:
    from ray import tune

    kwargs = build_tuner_init_kwargs(settings, param_space=space)
    run_config = dataclasses.replace(
        kwargs["run_config"], storage_path=str(storage), name="run", verbose=0
    )
    tuner = tune.Tuner(
        trainable,
        param_space=parse_param_space(space),
        tune_config=kwargs["tune_config"],
        run_config=run_config,
    )
    return tuner.fit()


def test_real_tune_run_with_optuna_and_asha_from_json(
    local_ray: Any, workdir: Path, tmp_path: Path
) -> None:
    module = _module(workdir, RUN_TRAINABLE)
    trainable = resolve_trainable_reference(f"{module}:trainable", cwd=workdir)
    space = json.loads(
        '{"model": {"lr": {"loguniform": [0.001, 0.1]}}, "bonus": {"choice": [0, 10]}, "n": 1}'
    )
    settings = TunerSettings.model_validate_json(
        json.dumps(
            {
                "num_samples": 4,
                "metric": "score",
                "mode": "max",
                "max_concurrent_trials": 2,
                "search_alg": "optuna",
                "search_alg_kwargs": {"seed": 0},
                "scheduler": "asha",
                "scheduler_kwargs": {"max_t": 4, "grace_period": 1, "reduction_factor": 2},
                "stop": {"training_iteration": 3},
            }
        )
    )
    results = _fit(trainable, space, settings, tmp_path / "results")
    assert results.num_errors == 0, [r.error for r in results]
    assert len(results) == 4
    for result in results:
        assert 0.001 <= result.config["model"]["lr"] <= 0.1
        assert result.config["bonus"] in (0, 10)
        assert result.config["n"] == 1
        assert result.metrics["training_iteration"] <= 3  # the stop criterion held
    best = results.get_best_result()  # metric and mode came from the JSON settings
    assert best.metrics["score"] == max(r.metrics["score"] for r in results)


def test_real_tune_grid_run_with_basic_search(
    local_ray: Any, workdir: Path, tmp_path: Path
) -> None:
    module = _module(workdir, RUN_TRAINABLE)
    trainable = resolve_trainable_reference(f"{module}:trainable", cwd=workdir)
    space = {"model": {"lr": {"grid_search": [0.1, 0.2, 0.3]}}, "bonus": {"randint": [0, 3]}}
    settings = TunerSettings(num_samples=2, metric="score", mode="max", search_alg="basic")
    results = _fit(trainable, space, settings, tmp_path / "results")
    assert results.num_errors == 0, [r.error for r in results]
    lrs = sorted(r.config["model"]["lr"] for r in results)
    assert lrs == [0.1, 0.1, 0.2, 0.2, 0.3, 0.3]  # every grid point, num_samples times
    assert all(r.config["bonus"] in (0, 1, 2) for r in results)
