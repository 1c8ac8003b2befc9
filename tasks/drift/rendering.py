"""How the drift check is shown: one log line and the ``data-drift`` markdown artifact (rounded numbers)."""

from __future__ import annotations

from typing import Any

#: Key of the Prefect markdown artifact (one per validate run; the UI keeps its history).
DRIFT_ARTIFACT_KEY = "data-drift"


def drift_headline(summary: dict[str, Any]) -> str:
    """One sentence: compared or not, changed or not, and whether the event went out."""
    champion = summary.get("champion")
    if not champion:
        return "Drift check: no champion to compare with."
    if not summary["data_changed"]:
        return f"Drift check against champion run {champion['run']}: no change."
    event = summary["event"]
    sent = (
        "event emitted"
        if event["emitted"]
        else f"no event: {event['skipped']}"
        if event.get("skipped")
        else "no event (Prefect sends no events here)"
    )
    return (
        f"Drift check against champion run {champion['run']}: data changed ({'; '.join(summary['reasons'])}); {sent}."
    )


def label_row(labels: dict[str, Any] | None) -> str:
    if labels is None:
        return "| label distribution | not compared | |"
    verdict = "drift" if labels["significant"] else "no drift"
    new = f"; classes new since the champion: {labels['new_classes']}" if labels["new_classes"] else ""
    return (
        f"| label distribution ({labels['target']}) | {verdict} | total variation {labels['total_variation']:.3f}, "
        f"chi-square p {labels['p_value']:.3g} ({labels['reference_rows']:,} training rows vs "
        f"{labels['current_rows']:,} now){new} |"
    )


def embedding_row(embeddings: dict[str, Any] | None) -> str:
    if embeddings is None:
        return "| backbone features | not compared | |"
    verdict = "drift" if embeddings["significant"] else "no drift"
    return (
        f"| backbone features | {verdict} | {embeddings['drifted_dimensions']} of {embeddings['dimensions']} "
        f"dimensions drifted ({embeddings['drifted_fraction']:.1%}), smallest BH-adjusted KS p "
        f"{embeddings['min_adjusted_p']:.3g}, alpha {embeddings['alpha']:g} ({embeddings['reference_rows']:,} "
        f"reference vs {embeddings['current_rows']:,} current images) |"
    )


def render_drift_markdown(summary: dict[str, Any]) -> str:
    """The artifact: what was compared, each test's verdict and figures, and what happens next."""
    lines = ["# Data drift against the champion", "", f"Data: `{summary['data_dir']}`", ""]
    champion = summary.get("champion")
    if champion:
        lines += [
            f"Champion: run `{champion['run']}` ({champion['model']}, {champion['target']})",
            "",
            "| check | result | figures |",
            "|---|---|---|",
            f"| data fingerprint | {'changed' if summary['fingerprint_changed'] else 'unchanged'} | "
            f"`{summary['data_fingerprint']}` (champion `{summary['champion_data_fingerprint']}`) |",
            label_row(summary.get("labels")),
            embedding_row(summary.get("embeddings")),
            "",
        ]
        if summary["data_changed"] and summary["event"].get("skipped"):
            lines += [
                f"**Data changed**: {'; '.join(summary['reasons'])}. No retrain triggered: "
                f"{summary['event']['skipped']}.",
                "",
            ]
        elif summary["data_changed"]:
            event = summary["event"]
            sent = "emitted" if event["emitted"] else "not sent (no Prefect API to send it to)"
            lines += [
                f"**Data changed**: {'; '.join(summary['reasons'])}. Event `{event['name']}` {sent} "
                f"(resource `{event['resource']['prefect.resource.id']}`): a deployment triggered by it "
                "(weekly-retrain, when served for these directories) retrains.",
                "",
            ]
        else:
            lines += ["No change: no event, no retrain.", ""]
    if summary["notes"]:
        lines += [*(f"- {note}" for note in summary["notes"]), ""]
    lines.append(f"Report: `{summary['report_path']}`")
    return "\n".join(lines) + "\n"


def publish_drift_artifact(summary: dict[str, Any]) -> None:
    """Create the ``data-drift`` markdown artifact when running inside a Prefect run."""
    try:
        from prefect.context import get_run_context

        get_run_context()
    except Exception:
        return
    from prefect.artifacts import create_markdown_artifact

    create_markdown_artifact(
        key=DRIFT_ARTIFACT_KEY,
        markdown=render_drift_markdown(summary),
        description="Drift of the validated data against the champion's",
    )
