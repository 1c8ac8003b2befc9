"""Prefect artifacts for every run: a report people can read in the UI, tables, progress.

Keys are fixed (``run-report``, ``per-class-metrics``, ``model-comparison``,
``training-progress-stage-<n>``), so the Prefect UI's Artifacts page shows each one's history
across runs. Table cells are rounded to 3 decimals, as in the report.
Plots are embedded in the markdown as base64 PNG data URIs: `create_image_artifact` only
renders public URLs, which a laptop run or an air-gapped server does not have.

Outside a flow or task run every function here is a no-op that returns an empty result, so plain
scripts and unit tests can call the same code as the flow. The markdown and the tables are built
by plain functions (`build_run_report`, `per_class_table`, `comparison_table`) that need no Prefect.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Mapping
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

from tasks.audit.publish import audit_markdown
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.progress import check_artifact_key, in_prefect_run
from tasks.results.provenance import provenance_lines

REPORT_KEY = "run-report"
PER_CLASS_KEY = "per-class-metrics"
COMPARISON_KEY = "model-comparison"
#: Decimals of the scores in the table artifacts (the UI shows a float's every digit).
TABLE_DECIMALS = 3
#: Embedded PNGs larger than this are palette-quantised (then shrunk) so the report stays loadable.
MAX_EMBEDDED_PNG_BYTES = 400_000
PLOT_TITLES = {
    "model_comparison": "Model comparison",
    "per_class_f1": "Per-class F1 of every model",
    "confusion_matrix": "Confusion matrix of the best model (row-normalised)",
    "class_distribution": "Class distribution before and after resampling",
    "training_curves": "Training curves (both stages)",
    "misclassified": "Misclassified hold-out images",
}


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """The run's metrics.json (written by the evaluation step)."""
    path = RunFolder(run_dir).metrics
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the report needs a finished evaluation")
    return json.loads(path.read_text(encoding="utf-8"))


def encode_png(path: Path, max_bytes: int = MAX_EMBEDDED_PNG_BYTES) -> str:
    """Base64 of the PNG, made smaller when needed (256-colour palette, then halved until it fits).

    The full-quality file stays in the run folder; only the embedded copy is reduced (a gallery
    of photos is ~1.5 MB as truecolour PNG, which makes the UI sluggish).
    """
    data = Path(path).read_bytes()
    if len(data) > max_bytes:
        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            reduced = image.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
        while True:
            buffer = io.BytesIO()
            reduced.save(buffer, format="PNG", optimize=True)
            data = buffer.getvalue()
            if len(data) <= max_bytes or min(reduced.size) < 200:
                break
            reduced = reduced.resize((reduced.width * 3 // 4, reduced.height * 3 // 4))
    return base64.b64encode(data).decode("ascii")


def per_class_table(metrics: Mapping[str, Any], model: str | None = None) -> list[dict[str, Any]]:
    """One row per class for one model (default: the best): precision, recall, F1, support."""
    model = model or metrics["best_model"]
    return [
        {
            "model": model,
            "index": row["index"],
            "class": row["name"],
            "precision": round(float(row["precision"]), TABLE_DECIMALS),
            "recall": round(float(row["recall"]), TABLE_DECIMALS),
            "f1": round(float(row["f1"]), TABLE_DECIMALS),
            "support": int(row["support"]),
        }
        for row in metrics["models"][model]["per_class"]
    ]


def interval_cells(row: Mapping[str, Any]) -> dict[str, float | None]:
    """``<score>_low`` / ``<score>_high`` of the row's bootstrap intervals (None where it has none)."""
    cells: dict[str, float | None] = {}
    for score in ("macro_f1", "accuracy"):
        interval = row.get(f"{score}_ci") or {}
        for end in ("low", "high"):
            cells[f"{score}_{end}"] = round(float(interval[end]), TABLE_DECIMALS) if end in interval else None
    return cells


def with_interval(row: Mapping[str, Any], score: str) -> str:
    """``0.788 [0.74, 0.83]`` (a comparison_table row), or ``0.788`` without an interval."""
    low, high = row.get(f"{score}_low"), row.get(f"{score}_high")
    text = f"{row[score]:.3f}"
    return f"{text} [{low:.2f}, {high:.2f}]" if low is not None and high is not None else text


def comparison_table(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    """One row per model, best macro-F1 first, then the majority-class reference for scale; bootstrap
    interval ends (``macro_f1_low`` ...) where ``metrics.json`` has them."""
    rows = [
        {
            "rank": i + 1,
            "model": r["model"],
            "macro_f1": round(float(r["macro_f1"]), TABLE_DECIMALS),
            "accuracy": round(float(r["accuracy"]), TABLE_DECIMALS),
            "weighted_f1": round(float(r["weighted_f1"]), TABLE_DECIMALS),
            **interval_cells(r),
        }
        for i, r in enumerate(metrics["comparison"])
    ]
    reference = metrics.get("majority_reference")
    if reference:
        rows.append(
            {
                "rank": None,
                "model": "(majority-class reference)",
                "macro_f1": round(float(reference["macro_f1"]), TABLE_DECIMALS),
                "accuracy": round(float(reference["accuracy"]), TABLE_DECIMALS),
                "weighted_f1": round(float(reference["weighted_f1"]), TABLE_DECIMALS),
                **interval_cells({}),
            }
        )
    return rows


def as_mapping(value: Any) -> dict[str, Any]:
    """A decision (dataclass, pydantic model or dict) as a plain dict."""
    if value is None:
        return {}
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if hasattr(value, "model_dump"):
        return value.model_dump()
    return dict(value)


def markdown_cell(value: Any) -> str:
    """Table-safe text (a pipe would split the cell)."""
    return str(value).replace("|", "\\|").replace("\n", " ")


def format_headline(metrics: Mapping[str, Any]) -> list[str]:
    """The key numbers: best model, its hold-out macro-F1 and accuracy, the majority reference."""
    best = metrics["best_model"]
    scores = metrics["models"][best]
    reference = metrics.get("majority_reference") or {}
    spans = {
        score: f" ({ci['level']:.0%} interval {ci['low']:.3f} to {ci['high']:.3f})" if ci else ""
        for score, ci in ((s, scores.get(f"{s}_ci")) for s in ("macro_f1", "accuracy"))
    }
    lines = [
        f"**Best model:** `{best}`: hold-out macro-F1 **{scores['macro_f1']:.3f}**{spans['macro_f1']}, accuracy "
        f"{scores['accuracy']:.3f}{spans['accuracy']}, weighted-F1 {scores['weighted_f1']:.3f} on "
        f"{metrics['holdout_size']:,} hold-out images ({len(metrics['class_names'])} {metrics['target']} classes).",
    ]
    if reference:
        lines.append(
            f"**Majority-class reference** (learning nothing): macro-F1 {reference['macro_f1']:.3f}, "
            f"accuracy {reference['accuracy']:.3f}."
        )
    weakest = [r for r in sorted(scores["per_class"], key=lambda r: r["f1"]) if r["f1"] < 1.0][:3]
    if weakest:
        lines.append("**Weakest classes (F1):** " + ", ".join(f"{r['name']} {r['f1']:.3f}" for r in weakest) + ".")
    else:
        lines.append("**Every class** has hold-out F1 1.000.")
    return lines


def format_decision(decision: Mapping[str, Any]) -> list[str]:
    """The champion/challenger outcome in one line, with its reason."""
    if not decision:
        return []
    verdict = "promoted to champion" if decision.get("promote") else "not promoted (the champion stays)"
    return [f"**Champion gate:** {verdict}: {decision.get('reason', '')}"]


def format_locations(run_dir: Path, extra: Mapping[str, Any]) -> list[str]:
    """Where the run's files, the champion and the Data Docs are."""
    run = RunFolder(Path(run_dir).resolve())
    lines = ["## Where things are", "", f"- Run folder: `{run.root}`", f"- Metrics: `{run.metrics}`"]
    submission = extra.get("submission") or run.submission
    if Path(submission).is_file():
        lines.append(f"- Submission: `{submission}`")
    lines.append(f"- Plots: `{run.plots}`")
    decision = as_mapping(extra.get("decision"))
    champion_dir = extra.get("champion_dir") or decision.get("champion_dir")
    if champion_dir:
        lines.append(f"- Champion: `{champion_dir}`")
    data_docs = extra.get("data_docs")
    if data_docs:
        text = str(data_docs)
        lines.append(
            f"- Data Docs (validation report): [{text}]({text})"
            if text.startswith(("http://", "https://"))
            else f"- Data Docs (validation report): `{text}`"
        )
    else:
        lines.append("- Data Docs: not built in this run (validation did not run)")
    return lines


def build_run_report(run_dir: Path, plots: Mapping[str, Path], extra: Mapping[str, Any] | None = None) -> str:
    """The run report as markdown: key numbers, comparison, decision, locations, embedded plots.

    ``extra`` may carry ``decision`` (the champion gate's Decision or a dict with promote/reason),
    ``data_docs`` (path or URL of the Great Expectations Data Docs), ``champion_dir``,
    ``submission`` (a published submission's path); any other key is listed under "Also".
    """
    extra = dict(extra or {})
    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    lines = [f"# Run `{run_dir.name}`: {metrics['target']} classifier", ""]
    lines += [line + "  " for line in format_headline(metrics)]
    lines += format_decision(as_mapping(extra.get("decision")))
    if extra.get("provenance"):
        lines += ["", "## What was measured", ""] + [
            f"- {markdown_cell(line)}" for line in provenance_lines(extra["provenance"])
        ]
    lines += [
        "",
        "## Models on the same hold-out",
        "",
        "| rank | model | macro-F1 [interval] | accuracy [interval] | weighted-F1 |",
        "|---:|---|---:|---:|---:|",
    ]
    for row in comparison_table(metrics):
        rank = row["rank"] if row["rank"] is not None else ""
        lines.append(
            f"| {rank} | {markdown_cell(row['model'])} | {with_interval(row, 'macro_f1')} | "
            f"{with_interval(row, 'accuracy')} | {row['weighted_f1']:.3f} |"
        )
    if "bootstrap" in metrics:
        boot = metrics["bootstrap"]
        lines += [
            "",
            f"Intervals: {boot['level']:.0%} percentile intervals from {boot['resamples']:,} bootstrap resamples "
            f"of the hold-out images, stratified by true class (seed {boot['seed']}). Models whose intervals "
            f"overlap much may differ by luck; the champion gate compares two models on the same resampled images.",
        ]
    lines += audit_section(run_dir)
    lines += [""] + format_locations(run_dir, extra)
    known = {"decision", "data_docs", "champion_dir", "submission", "provenance"}
    others = {k: v for k, v in extra.items() if k not in known and v is not None}
    if others:
        lines += ["", "## Also", ""] + [f"- {markdown_cell(k)}: `{markdown_cell(v)}`" for k, v in others.items()]
    lines += ["", "## Plots"]
    ordered = [name for name in PLOT_TITLES if name in plots] + [n for n in plots if n not in PLOT_TITLES]
    for name in ordered:
        path = Path(plots[name])
        if not path.is_file():
            continue
        title = PLOT_TITLES.get(name, name.replace("_", " ").capitalize())
        lines += ["", f"### {title}", "", f"![{title}](data:image/png;base64,{encode_png(path)})", f"*File: `{path}`*"]
    return "\n".join(lines) + "\n"


def audit_section(run_dir: Path) -> list[str]:
    """The data audit's section and gallery (tasks.audit), when the run audited its data."""
    run = RunFolder(run_dir)
    if not run.audit_summary.is_file():
        return []
    lines = ["", audit_markdown(run_dir)]
    if run.audit_gallery.is_file():
        lines += ["", f"![Data audit gallery](data:image/png;base64,{encode_png(run.audit_gallery)})"]
    return lines


def publish_run_artifacts(run_dir: Path, plots: Mapping[str, Path], extra: dict | None = None) -> dict[str, str]:
    """Create the run's markdown report and its two table artifacts; return key -> artifact id.

    A no-op returning ``{}`` outside a flow or task run (plain scripts and unit tests).
    """
    if not in_prefect_run():
        return {}
    from prefect.artifacts import create_markdown_artifact, create_table_artifact

    run_dir = Path(run_dir)
    metrics = read_metrics(run_dir)
    best = metrics["best_model"]
    # _sync=True: plain calls even if the caller happens to run inside an event loop.
    ids = {
        REPORT_KEY: create_markdown_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
            markdown=build_run_report(run_dir, plots, extra),
            key=check_artifact_key(REPORT_KEY),
            description=f"Run {run_dir.name}: best {best}, hold-out macro-F1 {metrics['models'][best]['macro_f1']:.3f}",
            _sync=True,
        ),
        PER_CLASS_KEY: create_table_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
            table=per_class_table(metrics),
            key=check_artifact_key(PER_CLASS_KEY),
            description=f"Per-class hold-out metrics of {best} (run {run_dir.name})",
            _sync=True,
        ),
        COMPARISON_KEY: create_table_artifact(  # type: ignore[call-arg]  # Prefect adds _sync at run time
            table=comparison_table(metrics),
            key=check_artifact_key(COMPARISON_KEY),
            description=f"Every model on the same {metrics['holdout_size']}-image hold-out (run {run_dir.name})",
            _sync=True,
        ),
    }
    get_logger().info("Published artifacts %s for run %s", ", ".join(ids), run_dir.name)
    return {key: str(value) for key, value in ids.items()}
