"""One training run at a time across every training deployment: the global concurrency limit ``training``.

A deployment's own ``concurrency_limit`` only queues runs of that one deployment, so a manual run
and the weekly (or data-triggered) retrain could train at the same time. Every run of a training
deployment therefore holds a slot of one Prefect global concurrency limit, `TRAINING_LIMIT`, for
as long as it trains. `deployments.serve` creates the limit (``--concurrency-limit`` slots); on the
work-pool route ``prefect gcl create training --limit 1`` does, and a run that finds no limit
creates it with one slot rather than train unguarded.

A run waiting for the slot is in the Running state and its log says what it waits for (Prefect
has no flow-run state for an in-flow wait); runs of the same deployment also queue as
``AwaitingConcurrencySlot`` before they start. Runs outside a deployment (``python -m flows.full``)
take no slot: two of them on one output directory already wait on its lock (tasks.lock).
The slot is a lease renewed while the run lives; a killed run's slot frees itself when the lease
runs out (`LEASE_SECONDS`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager

from tasks.logs import get_logger

#: Name of the global concurrency limit every training deployment's runs share.
TRAINING_LIMIT = "training"
#: How long a slot outlives a run that died without releasing it (renewed while the run lives).
LEASE_SECONDS = 300.0


def current_deployment_id() -> str | None:
    """The id of the deployment this flow run belongs to, or None (a command-line or test run)."""
    from prefect.runtime import deployment

    return deployment.id


def ensure_limit(name: str, slots: int = 1) -> bool:
    """Create the global concurrency limit ``name`` with ``slots`` slots if it does not exist yet;
    True when this call created it. An existing limit is left as its owner configured it."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
            return False
        except ObjectNotFound:
            pass
        try:
            client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=slots))
        except ObjectAlreadyExists:  # another run created it in between
            return False
    return True


def upsert_limit(name: str, slots: int) -> None:
    """Create the limit or set its number of slots (what `deployments.serve` was told)."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(name, slots)


@contextmanager
def training_slot(name: str = TRAINING_LIMIT) -> Iterator[None]:
    """Hold one slot of the training limit while the block runs (deployment runs only)."""
    if current_deployment_id() is None:
        yield
        return
    from prefect.concurrency.sync import concurrency

    logger = get_logger()
    if ensure_limit(name):
        logger.warning(
            "Created the global concurrency limit %r with 1 slot (none existed): one training run at a time", name
        )
    logger.info("Waiting for a slot of the global concurrency limit %r (one training run at a time)", name)
    asked = time.monotonic()
    with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS):
        logger.info("Got the %r slot after %.0f s; training starts", name, time.monotonic() - asked)
        yield
