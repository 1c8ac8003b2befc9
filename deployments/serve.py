"""Register and serve the pipeline's deployments: `python -m deployments.serve`.

The deployments of `deployments.definitions` (manual, weekly-retrain, daily-validate), served by
this one long-running process (no work pool needed). Training runs hold a slot of the global
concurrency limit ``training`` (flows.slots; ``--concurrency-limit`` slots, created here), so one
training run at a time across all training deployments (further runs wait their turn): training
saturates the machine, or the GPU when there is one. Stop with Ctrl-C; the schedules are paused on shutdown and resume when the process serves
again. See deployments/README.md.
"""

from __future__ import annotations

import sys
from typing import Any

from deployments.definitions import (
    DEFAULT_CRON,
    DEFAULT_VALIDATE_CRON,
    DEPLOYMENTS,
    DeploymentSpec,
    ServeSettings,
    data_change_trigger,
)
from flows.cli import fail, parse_model, quiet_environment
from flows.slots import TRAINING_LIMIT, upsert_limit

__all__ = ["DEFAULT_CRON", "DEFAULT_VALIDATE_CRON", "ServeSettings", "build_deployments", "main", "parse_settings"]


def load_flow(entrypoint: str) -> Any:
    """The flow object behind a ``module.attribute`` entry point."""
    import importlib

    module, _, attribute = entrypoint.rpartition(".")
    return getattr(importlib.import_module(module), attribute)


def build_deployment(spec: DeploymentSpec, settings: ServeSettings) -> Any:
    """One `RunnerDeployment`, unserved."""
    from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
    from prefect.deployments.runner import EntrypointType
    from prefect.schedules import Cron

    cron = settings.cron_of(spec)
    trigger = data_change_trigger(spec, settings)
    limit = ConcurrencyLimitConfig(
        limit=settings.concurrency_limit, collision_strategy=ConcurrencyLimitStrategy.ENQUEUE
    )
    return load_flow(spec.entrypoint).to_deployment(
        name=spec.name,
        description=settings.description_of(spec),
        tags=list(spec.tags),
        schedules=[Cron(cron, timezone=settings.timezone)] if cron else None,
        parameters=settings.parameters_of(spec),
        concurrency_limit=limit if spec.training else None,
        triggers=[trigger] if trigger else None,  # an automation, created when the deployment is registered
        entrypoint_type=EntrypointType.MODULE_PATH,  # runs from any directory
    )


def build_deployments(settings: ServeSettings | None = None) -> list[Any]:
    """Every deployment of the table, unserved."""
    settings = settings or ServeSettings()
    return [build_deployment(spec, settings) for spec in DEPLOYMENTS]


def check_schedules(settings: ServeSettings) -> str | None:
    """A readable problem with the cron strings or the time zone, or None."""
    from prefect.client.schemas.schedules import CronSchedule

    try:
        for cron in (settings.cron, settings.validate_cron):
            CronSchedule(cron=cron, timezone=settings.timezone)
    except Exception as exc:  # a typo in a cron string or time zone: say so before registering
        lines = str(exc).splitlines()
        return next((line.strip() for line in lines if "Value error" in line), lines[0] if lines else str(exc))
    return None


def parse_settings(argv: list[str] | None = None) -> ServeSettings:
    """The command line (built like every entry point's, from `ServeSettings`)."""
    prog = "python -m deployments.serve"
    settings = parse_model(ServeSettings, argv, description=(__doc__ or "").splitlines()[0], prog=prog)
    problem = check_schedules(settings)
    if problem:
        fail(f"{prog}: {problem}", code=2)
    return settings


def main(argv: list[str] | None = None) -> int:
    """Build the deployments, register them with the Prefect API, serve until interrupted."""
    settings = parse_settings(argv)
    quiet_environment()
    from prefect import serve

    # Shared by every training deployment (a deployment's own limit only queues its own runs).
    upsert_limit(TRAINING_LIMIT, settings.concurrency_limit)
    serve(*build_deployments(settings), limit=settings.limit)
    return 0


if __name__ == "__main__":
    sys.exit(main())
