"""The parts of test_retries.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

import pytest
from prefect import flow, task

from flows.retries import is_first_attempt, retry_on_transient


@pytest.mark.slow
def test_prefect_retries_transient_failures_only(prefect_server: None) -> None:
    attempts: dict[str, int] = {"flaky": 0, "broken": 0}
    first: list[bool] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_transient, persist_result=False)
    def flaky() -> str:
        attempts["flaky"] += 1
        first.append(is_first_attempt())
        if attempts["flaky"] < 3:
            raise ConnectionResetError("peer went away")
        return "ok"

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_on_transient, persist_result=False)
    def broken() -> str:
        attempts["broken"] += 1
        raise ValueError("bad labels")

    @flow(persist_result=False)
    def both() -> tuple[str, bool]:
        state = broken(return_state=True)
        return flaky(), state.is_failed()

    assert both() == ("ok", True)
    assert attempts == {"flaky": 3, "broken": 1}
    assert first == [True, False, False]  # a retry knows it is one (to resume, not wipe, checkpoints)
    assert is_first_attempt()  # outside any task run
