"""The pipeline's deployments, declared once.

`deployments.serve` builds its `RunnerDeployment` objects from this table, and
`python -m deployments.prefect_yaml` writes ``prefect.yaml`` (the work-pool route) from the same
table, so the two can never disagree (tests/integration check the committed file is current).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.data.settings import DataSettings

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
        description="Scheduled retraining ({cron}, {timezone}); unchanged data and settings are served from the cache.",
        tags=(*TAGS, "training", "scheduled"),
        schedule="cron",
        training=True,
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
)


class ServeSettings(BaseModel):
    """What the deployments are built with; `python -m deployments.serve` flags fill it in."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cron: str = Field(DEFAULT_CRON, description="weekly-retrain schedule (cron)")
    validate_cron: str = Field(DEFAULT_VALIDATE_CRON, description="daily-validate schedule (cron)")
    timezone: str = Field("UTC", description="IANA time zone of both schedules")
    output_dir: Path = Field(DataSettings().output_dir, description="default output directory of every deployment")
    data_dir: Optional[Path] = Field(None, description="default data directory (empty: the embedded sample)")
    weekly_refresh: bool = Field(
        False, description="the weekly run recomputes everything instead of reusing cached steps"
    )
    concurrency_limit: int = Field(1, ge=1, description="training runs at once (further runs wait their turn)")
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
