"""The analyze stage: results → DataFrame (saved as CSV) → seaborn figure."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from radas_flows.errors import RadasError

if TYPE_CHECKING:
    from radas_flows.inputs.plot_settings import AnalysisOptions
    from radas_flows.tuner import Tuner

RESULTS_CSV = "radas_results.csv"
FIGURE_STEM = "radas_figure"


@dataclass
class AnalysisResult:
    """What the analyze stage produced and where it stored it."""

    tuner: Tuner
    df: Any
    fig: Any
    csv_path: str | None
    figure_path: str | None
    preview_png: str | None
    # Set when the results folder refused the outputs and they were saved elsewhere.
    rescued_from: str | None = None  # the folder that refused them
    rescue_reason: str | None = None


def figure_of(plot: Any) -> Any:
    """The matplotlib Figure behind what a seaborn function returned.

    Axes-level functions return an ``Axes`` (``.figure``); figure-level ones a ``FacetGrid``,
    ``PairGrid`` or ``JointGrid`` (``.figure``); a Figure is returned as is.
    """
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    if isinstance(plot, Figure):
        return plot
    if isinstance(plot, Axes):
        return plot.get_figure()
    figure = getattr(plot, "figure", None) or getattr(plot, "fig", None)
    if isinstance(figure, Figure):
        return figure
    import matplotlib.pyplot as plt

    return plt.gcf()


def _use_headless_backend() -> None:
    import matplotlib

    if not os.environ.get("MPLBACKEND") and not os.environ.get("DISPLAY"):
        matplotlib.use("Agg")


def redact_frame(df: Any) -> Any:
    """A copy of a DataFrame with the registered secrets replaced in its text cells.

    Trials scrub their own secrets from what they report; this also covers values this process
    registered (an SMTP password, a cloud key) and results read back from storage.
    """
    from radas_flows.secrets import redact_text, registered_secrets

    values = registered_secrets()
    if not values or not hasattr(df, "select_dtypes"):
        return df
    columns = list(df.select_dtypes(include=["object", "string"]).columns)
    if not columns:
        return df
    out = df.copy()
    for column in columns:
        out[column] = out[column].map(lambda v: redact_text(v, values) if isinstance(v, str) else v)
    return out


def analyze_results(tuner: Tuner, options: AnalysisOptions, out_dir: str | None) -> AnalysisResult:
    """Turn a Tuner into the processed DataFrame and figure; save CSV and figure in ``out_dir``.

    The CSV is written before plotting, so a failing plot function loses nothing.
    """
    df = options.tuner_to_df_fn(tuner)
    df = options.process_df_fn(df, **options.process_df_fn_kwargs)
    if options.rename_mapping:
        df = df.rename(columns=options.rename_mapping)
    df = redact_frame(df)
    csv_path = None
    if out_dir is not None and hasattr(df, "to_csv"):
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        csv_path = str(Path(out_dir) / RESULTS_CSV)
        df.to_csv(csv_path, index=False)
    if options.plot_fn is None:
        return AnalysisResult(tuner, df, None, csv_path, None, None)

    _use_headless_backend()
    import matplotlib as mpl
    import matplotlib.pyplot as plt
    import seaborn as sns

    from radas_flows._artifacts import draw_png

    try:
        with mpl.rc_context():
            processed = options.process_sns_fn(sns)
            sns_module = processed if processed is not None else sns
            del sns_module  # the process function configures seaborn in place
            mpl.rcParams.update(dict(options.matplotlib_rcParams_update))  # type: ignore[arg-type]
            # A fresh current figure, so axes-level functions never draw into an old one.
            fresh = plt.figure()
            plot = options.plot_fn(data=df, **options.plot_kwargs)
            plot = options.process_g_fn(plot)
            fig = figure_of(plot)
            if fig is not fresh:
                plt.close(fresh)  # a figure-level function made its own figure
            figure_path = preview = None
            if out_dir is not None:
                if options.plot_format:
                    figure_path = str(Path(out_dir) / f"{FIGURE_STEM}.{options.plot_format}")
                    fig.savefig(figure_path, format=options.plot_format, bbox_inches="tight")
                preview = str(Path(out_dir) / f"{FIGURE_STEM}_preview.png")
                Path(preview).write_bytes(draw_png(fig, dpi=80))
            # Detach from pyplot (no figure piles up over many runs); the Figure stays usable.
            plt.close(fig)
    except Exception as e:
        where = f" The results table is saved in {csv_path}." if csv_path else ""
        raise RadasError(
            f"Plotting failed in plot_fn={getattr(options.plot_fn, '__name__', options.plot_fn)!r} "
            f"with plot_kwargs={options.plot_kwargs!r}: {type(e).__name__}: {e}.{where} "
            "Fix the plot arguments and re-run with dos=['analyze'] (no trial runs again)."
        ) from e
    return AnalysisResult(tuner, df, fig, csv_path, figure_path, preview)
