"""The results figure and analysis options: seaborn functions by name, PlotSettings."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, field_validator

from radas_flows.inputs.rules import ParameterError, plot_format_key, supported_plot_formats

__all__ = [
    "FIGURE_LEVEL_PLOT_FUNCTIONS",
    "SEABORN_PLOT_FUNCTIONS",
    "AnalysisOptions",
    "PlotSettings",
    "SeabornPlotName",
    "check_rc_params",
    "default_process_df_fn",
    "default_process_g_fn",
    "default_process_sns_fn",
    "default_tuner_to_df_fn",
    "resolve_plot_fn",
]

SeabornPlotName = Literal[
    "relplot",
    "scatterplot",
    "lineplot",
    "displot",
    "histplot",
    "kdeplot",
    "ecdfplot",
    "rugplot",
    "catplot",
    "stripplot",
    "swarmplot",
    "boxplot",
    "violinplot",
    "boxenplot",
    "pointplot",
    "barplot",
    "countplot",
    "lmplot",
    "regplot",
    "residplot",
    "heatmap",
    "clustermap",
    "pairplot",
    "jointplot",
]

#: Seaborn plotting functions a plot may name.
SEABORN_PLOT_FUNCTIONS: tuple[str, ...] = get_args(SeabornPlotName)

#: Those of them that make their own figure and return a grid (``g.figure``), not an Axes.
FIGURE_LEVEL_PLOT_FUNCTIONS: frozenset[str] = frozenset(
    {"relplot", "displot", "catplot", "lmplot", "clustermap", "pairplot", "jointplot"}
)


#: rcParams that name a module to import, a program to run or TeX code (matched as prefixes).
CODE_RC_PARAMS: tuple[str, ...] = (
    "backend",
    "animation.",
    "pgf.",
    "text.usetex",
    "text.latex.",
    "ps.usedistiller",
    "webagg.",
)


def check_rc_params(value: object) -> dict[str, Any]:
    """Check ``matplotlib_rcParams_update``: plain settings, none that names code to run.

    ``backend`` imports the module it names at the first figure; the animation, pgf, TeX and
    distiller settings name programs or TeX code that plotting runs. A project that needs
    one sets it in its own ``process_sns_fn``.

    Raises:
        ParameterError: Not a dict, or a key of :data:`CODE_RC_PARAMS`.

    Example:
        >>> check_rc_params({"figure.figsize": [7, 4.5]})
        {'figure.figsize': [7, 4.5]}
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ParameterError(
            f"matplotlib_rcParams_update={value!r} must be a dict, e.g. "
            '{"figure.figsize": [7, 4.5]}.'
        )
    for key in value:
        if isinstance(key, str) and key.startswith(CODE_RC_PARAMS):
            raise ParameterError(
                f"matplotlib_rcParams_update[{key!r}] is refused: it names a module to import, "
                "a program to run or TeX code, and flow parameters may name no code. Set it "
                "in the project's own process_sns_fn (a function that receives seaborn and may "
                "change matplotlib.rcParams)."
            )
    return dict(value)


def resolve_plot_fn(name: str) -> Callable[..., Any]:
    """Return the seaborn plotting function with this name.

    Args:
        name: One of ``SEABORN_PLOT_FUNCTIONS``.

    Returns:
        ``seaborn.<name>``.

    Raises:
        ParameterError: The name is not on the list.

    Example:
        >>> resolve_plot_fn("lineplot").__name__
        'lineplot'
    """
    if name not in SEABORN_PLOT_FUNCTIONS:
        close = difflib.get_close_matches(name, SEABORN_PLOT_FUNCTIONS, n=1)
        hint = f' Did you mean "{close[0]}"?' if close else ""
        raise ParameterError(
            f"plot fn: {name!r} is not a seaborn plotting function this package supports; "
            f"choose one of {list(SEABORN_PLOT_FUNCTIONS)}.{hint}"
        )
    import seaborn

    fn: Callable[..., Any] = getattr(seaborn, name)
    return fn


class PlotSettings(BaseModel):
    """The results figure: a seaborn function by name, its arguments and the file format.

    Example:
        >>> plot = PlotSettings(fn="lineplot", kwargs={"x": "config/a", "y": "score"})
        >>> plot.format
        'png'
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    fn: SeabornPlotName = Field(
        description=(
            "Seaborn plotting function, called as seaborn.<fn>(data=results, **kwargs). "
            "Figure-level ones (relplot, displot, catplot, lmplot, ...) allow facets."
        ),
        examples=["lineplot", "relplot"],
    )
    kwargs: dict[str, Any] = Field(
        default_factory=dict,
        description=(
            "Keyword arguments of the seaborn function; columns are named as in the results "
            'table, e.g. {"x": "config/a", "y": "score", "hue": "config/b"}.'
        ),
        examples=[{"x": "config/a", "y": "score", "hue": "config/b"}],
    )
    format: str | None = Field(
        default="png",
        description=(
            "File format of the saved figure, any format matplotlib saves: png, svg, pdf, "
            "jpg, eps, ... Empty keeps the figure unsaved."
        ),
        examples=["png", "svg", "pdf"],
    )

    @field_validator("format")
    @classmethod
    def _format_is_supported(cls, value: str | None) -> str | None:
        if value is None:
            return None
        key = plot_format_key(value)
        if key is None:
            raise ValueError(
                f"{value!r} is not a format matplotlib can save; "
                f"choose one of {sorted(supported_plot_formats())}"
            )
        return key


def default_tuner_to_df_fn(tuner: Any) -> Any:
    """``tuner.get_brief_dataframe()``: every reported row, without Tune's bookkeeping columns."""
    return tuner.get_brief_dataframe()


def default_process_df_fn(df: Any) -> Any:
    """Return the DataFrame unchanged."""
    return df


def default_process_sns_fn(sns: Any) -> Any:
    """Give seaborn a clean white-grid theme that reads well in reports and emails."""
    sns.set_theme(style="whitegrid", context="notebook")
    return sns


def default_process_g_fn(g: Any) -> Any:
    """Return the plot object unchanged."""
    return g


@dataclass(frozen=True)
class AnalysisOptions:
    """How results become a DataFrame and a figure (the radas analysis arguments)."""

    tuner_to_df_fn: Callable[..., Any]
    process_df_fn: Callable[..., Any]
    process_df_fn_kwargs: dict[str, Any]
    process_sns_fn: Callable[..., Any]
    plot_fn: Callable[..., Any] | None
    plot_kwargs: dict[str, Any]
    rename_mapping: dict[str, Any]
    matplotlib_rcParams_update: dict[str, Any]
    process_g_fn: Callable[..., Any]
    plot_format: str | None
