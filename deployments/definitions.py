"""The pipeline's deployments, declared once.

`deployments.serve` builds its `RunnerDeployment` objects from this table, and
`python -m deployments.prefect_yaml` writes ``prefect.yaml`` (the work-pool route) from the same
table, so the two can never disagree (tests/integration check the committed file is current).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.data.settings import DataSettings
from tasks.drift.events import DATA_CHANGED_EVENT, data_changed_match
from tasks.settings_fields import NonEmptyPath

if TYPE_CHECKING:
    from prefect.events import DeploymentEventTrigger

TAGS = ("living-things",)
DEFAULT_CRON = "0 3 * * 1"  # weekly retraining: Mondays 03:00
DEFAULT_VALIDATE_CRON = "0 6 * * *"  # daily validation: 06:00


@dataclass(frozen=True)
class DeploymentSpec:
    """One deployment: which flow, when, and whether it trains (one training run at a time)."""

    name: str
    entrypoint: str  # module path of the flow: runs from any directory
    description: str
    tags: tuple[str, ...]
    schedule: Optional[Literal["cron", "validate_cron"]]  # which ServeSettings field holds its cron
    training: bool  # training saturates the machine (or the GPU): concurrency limit, GPU queue
    retrain_on_data_change: bool = False  # triggered by living-things.data.changed (data_change_trigger)


DEPLOYMENTS: tuple[DeploymentSpec, ...] = (
    DeploymentSpec(
        name="manual",
        entrypoint="flows.full.full_pipeline",
        description="Validate, train, evaluate and publish on demand. Fill in the form to change the data "
        "directory, models or settings; the defaults run the embedded sample.",
        tags=(*TAGS, "training", "manual"),
        schedule=None,
        training=True,
    ),
    DeploymentSpec(
        name="weekly-retrain",
        entrypoint="flows.full.full_pipeline",
        description="Scheduled retraining ({cron}, {timezone}), and as soon as a validation finds the data changed "
        "(event living-things.data.changed); unchanged data and settings are served from the cache.",
        tags=(*TAGS, "training", "scheduled"),
        schedule="cron",
        training=True,
        retrain_on_data_change=True,
    ),
    DeploymentSpec(
        name="daily-validate",
        entrypoint="flows.validate.validate",
        description="Data validation only ({validate_cron}, {timezone}): Great Expectations suites and Data Docs, "
        "no training.",
        tags=(*TAGS, "validation", "scheduled"),
        schedule="validate_cron",
        training=False,
    ),
    DeploymentSpec(
        name="predict",
        entrypoint="flows.predict.predict",
        description="Classify new images with the champion (or a run's best model): fill in images (a folder or a "
        "CSV with a filename column); writes <output-dir>/predictions/<id>/predictions.csv and a gallery.",
        tags=(*TAGS, "prediction", "manual"),
        schedule=None,
        training=False,
    ),
)


class ServeSettings(BaseModel):
    """What the deployments are built with; `python -m deployments.serve` flags fill it in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(DEFAULT_CRON, description="weekly-retrain schedule (cron)")
    validate_cron: str = Field(DEFAULT_VALIDATE_CRON, description="daily-validate schedule (cron)")
    timezone: str = Field("UTC", description="IANA time zone of both schedules")
    output_dir: NonEmptyPath = Field(
        DataSettings().output_dir, description="default output directory of every deployment"
    )
    data_dir: Optional[NonEmptyPath] = Field(None, description="default data directory (none: the embedded sample)")
    weekly_refresh: bool = Field(
        False, description="the weekly run recomputes everything instead of reusing cached steps"
    )
    concurrency_limit: int = Field(
        1, ge=1, description="training runs at once, all training deployments together (further runs wait their turn)"
    )
    limit: Optional[int] = Field(
        None, ge=1, description="flow runs this serving process executes at once (empty: Prefect's default)"
    )

    def cron_of(self, spec: DeploymentSpec) -> Optional[str]:
        """The cron string of a scheduled deployment (None: run on demand only)."""
        return getattr(self, spec.schedule) if spec.schedule else None

    def description_of(self, spec: DeploymentSpec) -> str:
        return spec.description.format(cron=self.cron, validate_cron=self.validate_cron, timezone=self.timezone)

    def parameters_of(self, spec: DeploymentSpec, resolve: bool = True) -> dict[str, object]:
        """The ``params`` defaults of a deployment; served ones get absolute paths (runs start elsewhere)."""

        def shown(path: Path) -> str:
            return str(Path(path).expanduser().resolve()) if resolve else str(path)

        data: dict[str, object] = {"output_dir": shown(self.output_dir)}
        if self.data_dir is not None:
            data["data_dir"] = shown(self.data_dir)
        params: dict[str, object] = {"data": data}
        if spec.schedule == "cron" and self.weekly_refresh:
            params["runtime"] = {"refresh": True}
        return {"params": params}


def data_change_trigger(
    spec: DeploymentSpec, settings: ServeSettings, resolve: bool = True
) -> Optional[DeploymentEventTrigger]:
    """The trigger that retrains when a validation of this deployment's data finds it changed.

    It matches `living-things.data.changed` events about the deployment's output directory AND its
    data directory (tasks.drift.events), and starts a run with the deployment's own parameters:
    the data that changed are the data it trains on. ``resolve=False`` for prefect.yaml (relative
    paths matched as path suffixes). None for deployments without ``retrain_on_data_change``.
    """
    if not spec.retrain_on_data_change:
        return None
    from prefect.events import DeploymentEventTrigger

    return DeploymentEventTrigger(
        name=f"{spec.name}: retrain on changed data",
        description="A validation found the data changed (fingerprint or significant drift against the champion).",
        expect={DATA_CHANGED_EVENT},
        match=data_changed_match(settings.output_dir, settings.data_dir, resolve=resolve),
        posture="Reactive",
        threshold=1,
        within=0,
    )
