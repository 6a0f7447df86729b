"""explode, explode_tensor and explode_dict_of_tensors (radas_flows.tidy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from radas_flows.tidy import explode, explode_dict_of_tensors, explode_tensor


def test_explode_learning_curves_with_step_index() -> None:
    df = pd.DataFrame(
        {
            "config/lr": [0.1, 0.01],
            "loss": [[0.9, 0.5, 0.3], np.array([0.8, 0.7, 0.6])],
            "acc": [(0.1, 0.5, 0.9), [0.2, 0.3, 0.4]],
            "name": ["a", "b"],
        },
        index=[7, 7],  # duplicate labels must not mix the rows' steps
    )

    out = explode(df, ["loss", "acc"])

    assert list(out.columns) == ["config/lr", "loss", "acc", "name", "step"]
    assert out.index.tolist() == list(range(6))
    assert out["step"].tolist() == [0, 1, 2, 0, 1, 2]
    assert out["loss"].tolist() == [0.9, 0.5, 0.3, 0.8, 0.7, 0.6]
    assert out["acc"].tolist() == [0.1, 0.5, 0.9, 0.2, 0.3, 0.4]
    assert out["config/lr"].tolist() == [0.1] * 3 + [0.01] * 3
    assert out["loss"].dtype == np.float64
    assert df["loss"].iloc[0] == [0.9, 0.5, 0.3]  # input untouched


def test_explode_detects_list_columns() -> None:
    df = pd.DataFrame({"x": [None, [1, 2]], "y": [3, 4], "z": [[5], [6, 7]]})
    out = explode(df, index_col="epoch")
    assert out["z"].tolist() == [5, 6, 7]
    assert out["epoch"].tolist() == [0, 0, 1]
    assert out["y"].tolist() == [3, 4, 4]


def test_explode_single_column_without_index_and_empty_lists() -> None:
    df = pd.DataFrame({"curve": [[1, 2], [], 5], "k": ["a", "b", "c"]})
    out = explode(df, "curve", index_col=None)
    assert list(out.columns) == ["curve", "k"]
    assert out["k"].tolist() == ["a", "a", "b", "c"]
    values = out["curve"].tolist()
    assert values[:2] == [1, 2] and np.isnan(values[2]) and values[3] == 5


def test_explode_errors() -> None:
    df = pd.DataFrame({"a": [[1, 2]], "b": [[1]], "step": [0], "s": [1]})
    with pytest.raises(ValueError, match=r"different lengths.*explode them one at a time"):
        explode(df, ["a", "b"], index_col="i")
    with pytest.raises(ValueError, match=r"index_col 'step' is already a column"):
        explode(df, "a")
    with pytest.raises(KeyError, match=r"\['nope'\] not in the DataFrame"):
        explode(df, ["nope"])
    with pytest.raises(ValueError, match=r"No column holds lists"):
        explode(pd.DataFrame({"s": [1, 2]}))


def test_explode_tensor_matches_every_element() -> None:
    array = np.arange(24, dtype=np.float32).reshape(2, 3, 4) / 10
    out = explode_tensor(array, dim_names=["layer", "head", "pos"], value_name="attn")
    assert list(out.columns) == ["layer", "head", "pos", "attn"]
    assert len(out) == 24
    for row in out.itertuples(index=False):
        assert row.attn == array[row.layer, row.head, row.pos]


def test_explode_tensor_defaults_scalars_and_lists() -> None:
    out = explode_tensor([[1, 2], [3, 4]])
    assert out.to_dict("list") == {
        "dim_0": [0, 0, 1, 1],
        "dim_1": [0, 1, 0, 1],
        "value": [1, 2, 3, 4],
    }
    assert explode_tensor(np.float64(2.5)).to_dict("list") == {"value": [2.5]}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"dim_names": ["a"]}, r"has 1 names but the tensor has 2 dimensions"),
        ({"dim_names": ["a", "a"]}, r"repeats a name"),
        ({"dim_names": ["a", "value"]}, r"value_name 'value' is also a dimension name"),
    ],
)
def test_explode_tensor_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        explode_tensor(np.zeros((2, 2)), **kwargs)  # type: ignore[arg-type]


def test_explode_dict_of_tensors_joins_on_indices() -> None:
    w = np.array([[0.5, 0.25], [1.0, 2.0]])
    g = np.array([[1, -1], [0, 3]])
    out = explode_dict_of_tensors({"w": w, "grad": g}, dim_names=["i", "j"])
    assert list(out.columns) == ["i", "j", "w", "grad"]
    assert out["w"].tolist() == [0.5, 0.25, 1.0, 2.0]
    assert out["grad"].tolist() == [1, -1, 0, 3]


def test_explode_dict_of_tensors_different_shapes_outer_join() -> None:
    out = explode_dict_of_tensors({"long": np.arange(3), "short": np.array([9.0])})
    assert out["dim_0"].tolist() == [0, 1, 2]
    assert out["long"].tolist() == [0, 1, 2]
    assert out["short"].iloc[0] == 9.0 and out["short"].iloc[1:].isna().all()


def test_explode_dict_of_tensors_errors() -> None:
    with pytest.raises(ValueError, match=r"tensors is empty"):
        explode_dict_of_tensors({})
    with pytest.raises(ValueError, match=r"differ in dimensionality \{'a': 1, 'b': 2\}"):
        explode_dict_of_tensors({"a": np.zeros(2), "b": np.zeros((2, 2))})
    with pytest.raises(ValueError, match=r"Keys \['i'\] are also dimension names"):
        explode_dict_of_tensors({"i": np.zeros(2)}, dim_names=["i"])


def test_torch_tensors_when_installed() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert explode_tensor(t)["value"].tolist() == [0, 1, 2, 3, 4, 5]
    out = explode(pd.DataFrame({"c": [torch.tensor([1.0, 2.0])]}), "c")
    assert out["c"].tolist() == [1.0, 2.0]
    assert explode_dict_of_tensors({"a": t, "b": t * 2})["b"].tolist() == [0, 2, 4, 6, 8, 10]


def test_the_functions_are_public_at_package_level_and_in_their_module() -> None:
    import radas_flows
    import radas_flows.tidy

    # A module named `explode` would replace the function `radas_flows.explode` once
    # imported (the import system sets the package attribute), hence `radas_flows.tidy`.
    from radas_flows import explode as from_package

    assert from_package is radas_flows.tidy.explode is explode
    assert radas_flows.explode is explode and callable(radas_flows.explode)
    assert radas_flows.explode_tensor is explode_tensor
    assert radas_flows.explode_dict_of_tensors is explode_dict_of_tensors
