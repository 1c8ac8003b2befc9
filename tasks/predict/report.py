"""What a batch prediction shows: a small gallery (PNG) and two Prefect artifacts.

The ``predictions`` table artifact holds the first `TABLE_ROWS` rows with rounded probabilities
(the full table is predictions.csv); the ``prediction-report`` markdown artifact says which model
predicted, how many images went to each class, which images could not be used, and embeds the
gallery (as the run report embeds its plots: `tasks.results.report.encode_png`). Outside a flow
or task run the artifacts are skipped, as every artifact of the pipeline is.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace
from pathlib import Path
from typing import Any

import pandas as pd

from tasks.layout import PredictionFolder
from tasks.logs import printable
from tasks.predict.output import PredictionSummary, probability_column, read_prediction_csv
from tasks.progress import check_artifact_key, in_prefect_run
from tasks.results.figures import save_figure
from tasks.results.gallery import thumbnail_grid
from tasks.results.report import TABLE_DECIMALS, encode_png

#: Images in the gallery (the first ones, in input order).
GALLERY_SIZE = 12
#: Rows of the table artifact.
TABLE_ROWS = 50
#: Decimals of the probabilities shown in artifacts: those of every table artifact.
SHOWN_DECIMALS = TABLE_DECIMALS
TABLE_KEY = "predictions"
REPORT_KEY = "prediction-report"


def gallery_title(row: Any) -> str:
    """``<class> (<probability>)``, or why the image could not be used."""
    if not row.image_ok:
        return f"not usable: {row.problem}"
    return f"{row.class_name} ({row.top_probability:.{SHOWN_DECIMALS}f})"


def with_probability(frame: pd.DataFrame, class_names: list[str]) -> pd.DataFrame:
    """The frame plus ``top_probability``: the probability of the predicted class (NaN when unusable)."""
    columns = [probability_column(n) for n in class_names]
    return frame.assign(top_probability=frame[columns].max(axis=1, skipna=True))


def plot_prediction_gallery(frame: pd.DataFrame, class_names: list[str], path: Path) -> Path:
    """A grid of the first images, each titled with its predicted class and probability."""
    rows = with_probability(frame, class_names).head(GALLERY_SIZE)

    def title(row: Any) -> str:
        filename = printable(row.filename)  # a control character would garble the figure and warn raw
        name = filename if len(filename) <= 28 else f"{filename[:25]}..."
        return "\n".join([name, *textwrap.wrap(gallery_title(row), 36)[:2]])

    figure = thumbnail_grid(
        [(row.path if row.image_ok else None, title(row), not row.image_ok) for row in rows.itertuples(index=False)]
    )
    figure.suptitle(f"Predictions: the first {len(rows)} of {len(frame)} images", fontsize=12)
    return save_figure(figure, path)


def table_rows(frame: pd.DataFrame, class_names: list[str]) -> list[dict[str, Any]]:
    """The first `TABLE_ROWS` rows for the table artifact, probabilities rounded."""
    shown = with_probability(frame, class_names).head(TABLE_ROWS)
    return [
        {
            "filename": row.filename,
            "class_index": None if pd.isna(row.class_index) else int(row.class_index),
            "class_name": row.class_name,
            "probability": None if pd.isna(row.top_probability) else round(float(row.top_probability), SHOWN_DECIMALS),
            "problem": row.problem,
        }
        for row in shown.itertuples(index=False)
    ]


def report_markdown(summary: PredictionSummary, frame: pd.DataFrame, gallery: Path | None) -> str:
    """The markdown artifact: model, counts per class, unusable images, gallery, where the files are."""
    source = "the champion" if summary.source == "champion" else "run"
    lines = [
        f"# Predictions of {summary.model} ({source} {summary.run})",
        "",
        f"{summary.images} image(s); {summary.unreadable} could not be used.",
        "",
        "| class | images |",
        "| --- | --- |",
        *[f"| {name} | {count} |" for name, count in summary.class_counts.items()],
    ]
    bad = frame[~frame["image_ok"]].head(10)
    if len(bad):
        lines += ["", "## Images that could not be used", ""]
        lines += [f"- `{printable(row.filename)}`: {row.problem}" for row in bad.itertuples(index=False)]
    if gallery is not None and Path(gallery).is_file():
        lines += ["", "## Gallery", "", f"![gallery](data:image/png;base64,{encode_png(Path(gallery))})"]
    lines += ["", f"Predictions: `{summary.predictions_path}`"]
    return "\n".join(lines) + "\n"


def publish_prediction(summary: PredictionSummary) -> PredictionSummary:
    """Draw the gallery and publish both artifacts (inside a run); return the summary plus the gallery path."""
    folder = PredictionFolder(Path(summary.prediction_dir))
    frame = read_prediction_csv(folder.predictions)
    names = list(summary.class_names)
    gallery = plot_prediction_gallery(frame, names, folder.gallery)
    if in_prefect_run():
        from prefect.artifacts import create_markdown_artifact, create_table_artifact

        create_table_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
            table=table_rows(frame, names),
            key=check_artifact_key(TABLE_KEY),
            description=f"First {min(TABLE_ROWS, len(frame))} of {len(frame)} predictions of {summary.model}",
            _sync=True,
        )
        create_markdown_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
            markdown=report_markdown(summary, frame, gallery),
            key=check_artifact_key(REPORT_KEY),
            description=f"{len(frame)} image(s) classified by {summary.model}",
            _sync=True,
        )
    return replace(summary, gallery=str(gallery))
