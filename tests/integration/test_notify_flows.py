"""The parts of test_notify.py that need a Prefect server (moved out of tests/unit, which starts none)."""

from __future__ import annotations

import pytest

from flows.notify import notify_on_failure
from tests.unit.test_notify import Webhook, webhook


@pytest.mark.slow
def test_hook_fires_on_a_real_failed_flow(prefect_server: None, webhook: Webhook) -> None:
    from prefect import flow

    @flow(name="notify-test", on_failure=[notify_on_failure], persist_result=False)
    def failing(notify_url: str) -> None:
        raise RuntimeError("the disk is on fire\nsecond line")

    state = failing(webhook.url, return_state=True)
    assert state.is_failed()
    assert len(webhook.received) == 1
    text = webhook.received[0]["text"]
    assert text.startswith("Prefect flow run notify-test/") and "the disk is on fire" in text
    assert "second line" not in text
