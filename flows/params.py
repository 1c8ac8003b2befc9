"""The pipeline's parameters: one typed pydantic model made of sections.

It is the `python -m flows.full` command line (one flag per field, grouped by section), the form
a user fills in the Prefect UI (one group per section), and what deployments store. Each section
*is* the settings type its tasks take (defined next to them, under ``tasks/<stage>/settings.py``),
so every setting has exactly one default and one description.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.data.settings import DataSettings, SplitSettings
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.results.settings import GateSettings, KaggleSettings
from tasks.validation.settings import ValidationSettings


class RuntimeSettings(BaseModel):
    """How a run executes: caching, where tasks run, who hears about failures."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    refresh: bool = Field(False, description="Recompute every cached step (features, models) instead of reusing it.")
    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description="thread: tasks run in threads of the flow's process; dask: on a Dask cluster "
        "(a local one, one worker process per core, unless dask_address is set).",
    )
    dask_address: Optional[str] = Field(
        None,
        description="Scheduler address of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (with task_runner dask).",
    )
    notify_url: Optional[str] = Field(
        None,
        description='Webhook (http/https, JSON {"text": ...}) or Apprise URL told when a run fails; '
        "empty: $LIVING_THINGS_NOTIFY_URL, or nobody. Prefer the variable for secret URLs (parameters show in the UI).",
    )
    wait: bool = Field(
        True,
        description="When another run holds the output directory (its .lock): wait for it to finish; "
        "off (--no-wait): stop at once with a message naming that run.",
    )


class PipelineParams(BaseModel):
    """Everything a run of the full pipeline can be told, one section per stage."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    data: DataSettings = Field(DataSettings(), description="Where the data is and where outputs go.")
    split: SplitSettings = Field(SplitSettings(), description="What to predict, the hold-out, class imbalance.")
    validation: ValidationSettings = Field(
        ValidationSettings(), description="Data validation thresholds (Great Expectations suites)."
    )
    baselines: BaselineSettings = Field(
        BaselineSettings(), description="scikit-learn models on pixels and on backbone features."
    )
    transfer: TransferSettings = Field(TransferSettings(), description="The transfer-learning model (two stages).")
    gate: GateSettings = Field(GateSettings(), description="When a run's best model replaces the champion.")
    kaggle: KaggleSettings = Field(KaggleSettings(), description="Kaggle download and submission.")
    runtime: RuntimeSettings = Field(RuntimeSettings(), description="Caching, task runner, notifications.")


#: Flags of the flat command line before the parameters had sections, where the flat name of
#: the field is not the same: ``--old-name`` keeps working as an alias of ``--section.field``.
LEGACY_FLAGS: dict[str, str] = {
    "baselines": "baselines.pixel_models",
    "embedding_baselines": "baselines.embedding_models",
    "transfer": "transfer.enabled",
    "gate_min_improvement": "gate.min_improvement",
    "gate_max_class_f1_drop": "gate.max_class_f1_drop",
}
