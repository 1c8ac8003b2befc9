"""Register and serve the pipeline's deployments: `python -m deployments.serve`.

Three deployments, served by this one long-running process (no work pool needed):

* ``living-things-full/manual``: the end-to-end pipeline, run on demand from the UI (the typed
  parameter form) or the CLI; defaults to the embedded sample.
* ``living-things-full/weekly-retrain``: the same flow on a cron schedule (default Mondays 03:00).
* ``validate/daily-validate``: data validation only, every day (default 06:00).

The pipeline deployments allow one run at a time (further runs wait their turn): training
saturates the machine, or the GPU when there is one. Stop with Ctrl-C; the schedules are paused
on shutdown and resume when the process serves again. See deployments/README.md.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

__all__ = ["ServeSettings", "build_deployments", "main", "parse_settings"]

DEFAULT_CRON = "0 3 * * 1"  # weekly retraining: Mondays 03:00
DEFAULT_VALIDATE_CRON = "0 6 * * *"  # daily validation: 06:00
TAGS = ["living-things"]


@dataclass(frozen=True)
class ServeSettings:
    """What `build_deployments` needs; the command line fills it in."""

    cron: str = DEFAULT_CRON
    validate_cron: str = DEFAULT_VALIDATE_CRON
    timezone: str = "UTC"
    output_dir: Path = Path("outputs")
    data_dir: Optional[Path] = None
    weekly_refresh: bool = False
    concurrency_limit: int = 1
    limit: Optional[int] = None  # flow runs this process executes at once (None: Prefect's default)


def default_parameters(settings: ServeSettings) -> dict[str, Any]:
    """The ``params`` defaults shared by every deployment (absolute paths: runs start elsewhere)."""
    params: dict[str, Any] = {"output_dir": str(Path(settings.output_dir).expanduser().resolve())}
    if settings.data_dir is not None:
        params["data_dir"] = str(Path(settings.data_dir).expanduser().resolve())
    return params


def build_deployments(settings: ServeSettings | None = None) -> list[Any]:
    """The three `RunnerDeployment` objects (manual, weekly retrain, daily validate), unserved."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    from flows.full import full_pipeline
    from flows.params import PipelineParams
    from flows.validate import validate

    settings = settings or ServeSettings()
    shared = default_parameters(settings)
    weekly = dict(shared)
    if settings.weekly_refresh and "refresh" in PipelineParams.model_fields:
        weekly["refresh"] = True
    one_at_a_time = ConcurrencyLimitConfig(
        limit=settings.concurrency_limit, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    common: dict[str, Any] = {"entrypoint_type": EntrypointType.MODULE_PATH}  # runs from any directory
    return [
        full_pipeline.to_deployment(
            name="manual",
            description="Validate, train, evaluate and publish on demand. Fill in the form to change "
            "the data directory, models or settings; the defaults run the embedded sample.",
            tags=[*TAGS, "training", "manual"],
            parameters={"params": shared},
            concurrency_limit=one_at_a_time,
            **common,
        ),
        full_pipeline.to_deployment(
            name="weekly-retrain",
            description=f"Scheduled retraining ({settings.cron}, {settings.timezone}); unchanged data "
            "and settings are served from the cache.",
            tags=[*TAGS, "training", "scheduled"],
            schedules=[Cron(settings.cron, timezone=settings.timezone)],
            parameters={"params": weekly},
            concurrency_limit=one_at_a_time,
            **common,
        ),
        validate.to_deployment(
            name="daily-validate",
            description=f"Data validation only ({settings.validate_cron}, {settings.timezone}): Great "
            "Expectations suites and Data Docs, no training.",
            tags=[*TAGS, "validation", "scheduled"],
            schedules=[Cron(settings.validate_cron, timezone=settings.timezone)],
            parameters={"params": shared},
            **common,
        ),
    ]


def parse_settings(argv: list[str] | None = None) -> ServeSettings:
    """The command line."""
    defaults = ServeSettings()
    parser = argparse.ArgumentParser(prog="python -m deployments.serve", description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--cron", default=defaults.cron, help=f"weekly-retrain schedule (default: {defaults.cron!r})")
    parser.add_argument("--validate-cron", default=defaults.validate_cron,
                        help=f"daily-validate schedule (default: {defaults.validate_cron!r})")
    parser.add_argument("--timezone", default=defaults.timezone, help="IANA time zone of both schedules (default: UTC)")
    parser.add_argument("--output-dir", type=Path, default=defaults.output_dir,
                        help="default output directory of every deployment (default: ./outputs)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="default data directory (default: the embedded sample)")
    parser.add_argument("--weekly-refresh", action="store_true",
                        help="the weekly run recomputes everything instead of reusing cached steps")
    parser.add_argument("--limit", type=int, default=None, help="flow runs this process executes at once")
    args = parser.parse_args(argv)
    try:
        from prefect.client.schemas.schedules import CronSchedule

        for cron in (args.cron, args.validate_cron):
            CronSchedule(cron=cron, timezone=args.timezone)
    except Exception as exc:  # a typo in a cron string or time zone: say so before registering
        message = str(exc).splitlines()
        detail = next((line.strip() for line in message if "Value error" in line), message[0] if message else exc)
        parser.exit(2, f"python -m deployments.serve: error: {detail}\n")
    return ServeSettings(
        cron=args.cron, validate_cron=args.validate_cron, timezone=args.timezone, output_dir=args.output_dir,
        data_dir=args.data_dir, weekly_refresh=args.weekly_refresh, limit=args.limit,
    )


def main(argv: list[str] | None = None) -> int:
    """Build the deployments, register them with the Prefect API, serve until interrupted."""
    settings = parse_settings(argv)
    from flows.cli import quiet_environment

    quiet_environment()
    from prefect import serve

    serve(*build_deployments(settings), limit=settings.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
