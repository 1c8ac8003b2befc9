"""The audit stage of ``flows.full`` (after the split, before training): the backbone features
(the same cached step training reads), then tasks.audit. Kept here so flows.full only calls it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel, ConfigDict

from flows.caching import cached_options
from flows.steps import embeddings_task, step
from tasks.audit.publish import publish_audit_artifact, write_gallery
from tasks.audit.stage import write_audit
from tasks.data.dataset import read_classes_json
from tasks.layout import RunFolder
from tasks.logs import get_logger
from tasks.models.embeddings import EmbeddingSpec
from tasks.validation.settings import AuditSettings, ValidationSettings

audit_task = step(write_audit, name="data-audit", cache_policy=NO_CACHE, persist_result=False)


class ValidationKeySettings(BaseModel):
    """What a reused validation depends on besides the data: its thresholds and the scan audit's."""

    model_config = ConfigDict(frozen=True)

    validation: ValidationSettings
    audit: AuditSettings

    @property
    def reference(self) -> str:
        return self.validation.reference


def run_audit(params: Any, table: Path, run_dir: Path, cache_dir: Path) -> dict[str, Any] | None:
    """Near duplicates and label issues on the cached features, ``audit/`` written, the split
    rewritten when training rows are excluded; None when the run computes no features."""
    transfer, split = params.transfer.resolved(), params.split
    if not params.audit.feature_audit:
        get_logger().info(
            "Audit: the feature audit is off (--audit.feature-audit false); only validation's hash audit ran"
        )
        return None
    if not (transfer.enabled or params.baselines.embedding_models):
        get_logger().info("Audit: no backbone features in this run; only validation's hash audit ran")
        return None
    refresh = params.runtime.refresh
    spec = EmbeddingSpec.of(transfer, split.seed)
    embeddings = Path(
        embeddings_task.with_options(**cached_options(cache_dir, refresh))(
            table, spec, cache_dir, refresh=refresh, chunk_size=transfer.feature_chunk
        )
    )
    summary = audit_task(table, embeddings, run_dir, params.audit, split.target, split.seed, cache_dir)
    run = RunFolder(run_dir)
    try:
        write_gallery(run_dir, list(read_classes_json(run.classes).names(split.target)))
        publish_audit_artifact(run_dir)
    except Exception as exc:  # a picture or an artifact never fails a run
        get_logger().warning("Audit gallery/artifact not written: %s: %s", type(exc).__name__, exc)
    excluded = summary["excluded_from_training"]
    print(
        f"Data audit: {summary['duplicate_groups']} duplicate group(s), {summary['label_issue_candidates']} "
        f"label-issue candidate(s); {sum(excluded.values())} training image(s) excluded ({excluded})"
    )
    return summary  # type: ignore[no-any-return]
