"""A notify URL given as a parameter never reaches Prefect's database, yet the failure hook still
posts to it: a small flow taking the pipeline's parameter model, under a real (temporary) server."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest

from flows import notify
from flows.notify import notify_on_failure
from flows.params import PipelineParams, RuntimeSettings

pytestmark = pytest.mark.slow  # a Prefect server start (shared by the session) and two flow runs

PASSWORD = "hunter2-never-stored"
SECRET_URL = f"https://user:{PASSWORD}@hooks.example/T0/B0"
BLOCK_PASSWORD = "block-token-never-stored"
BLOCK_URL = f"https://hooks.example/{BLOCK_PASSWORD}"


def database_files() -> list[Path]:
    """The temporary server's SQLite database and its journal files (prefect_test_harness puts
    them in a temporary folder, named by the connection URL, which is itself a SecretStr)."""
    from prefect.settings import get_current_settings

    url = get_current_settings().server.database.connection_url
    assert url is not None
    text = url.get_secret_value() if hasattr(url, "get_secret_value") else str(url)
    assert text.startswith("sqlite"), text
    database = Path(text.split("///", 1)[1])
    return [path for path in database.parent.iterdir() if path.name.startswith(database.name)]


def stored_parameters(flow_run_id: UUID) -> dict[str, Any]:
    """The run's parameters as the API (and so the UI) has them."""
    from prefect import get_client

    async def read() -> dict[str, Any]:
        async with get_client() as client:
            return (await client.read_flow_run(flow_run_id)).parameters

    return asyncio.run(read())


def run_failing_flow(params: Any) -> tuple[UUID, list[str]]:
    """A flow with the full pipeline's parameter type and hooks that fails; (run id, URLs notified)."""
    from prefect import flow

    sent: list[str] = []

    def record(url: str, text: str, **_: Any) -> bool:
        sent.append(url)
        return True

    @flow(name="notify-secret-test", on_failure=[notify_on_failure], persist_result=False)
    def failing(params: PipelineParams = PipelineParams()) -> None:
        raise RuntimeError("the disk is on fire")

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(notify, "send_notification", record)
        state = failing(params, return_state=True)
    assert state.is_failed()
    run_id = state.state_details.flow_run_id
    assert run_id is not None
    return run_id, sent


def assert_not_stored(secret: str) -> None:
    contents = [path.read_bytes() for path in database_files()]
    assert any(b"notify-secret-test" in content for content in contents)  # the search sees the runs
    assert not [content for content in contents if secret.encode() in content], f"{secret!r} is in the database"


def test_notify_url_parameter_is_masked_in_the_database_but_notified(
    prefect_server: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(notify.ENV_VAR, raising=False)
    run_id, sent = run_failing_flow(PipelineParams(runtime=RuntimeSettings(notify_url=SECRET_URL)))
    assert sent == [SECRET_URL]  # the in-process parameters, not the API's masked copy
    parameters = stored_parameters(run_id)
    assert parameters["params"]["runtime"]["notify_url"] == "**********"
    assert PASSWORD not in json.dumps(parameters)
    assert_not_stored(PASSWORD)


def test_secret_block_and_masked_copies(prefect_server: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The deployment route: a Secret block's name is the parameter; a masked copy of a URL (a run
    copied from a stored one) counts as unset."""
    from prefect.blocks.system import Secret

    monkeypatch.setenv(notify.ENV_VAR, "https://env.example/hook")
    Secret(value=BLOCK_URL).save("notify-secret-test", overwrite=True)
    as_json = {"runtime": {"notify_url": "**********", "notify_secret_block": "notify-secret-test"}}
    run_id, sent = run_failing_flow(as_json)  # validated into PipelineParams by Prefect, as for a deployment
    assert sent == [BLOCK_URL]
    assert stored_parameters(run_id)["params"]["runtime"]["notify_secret_block"] == "notify-secret-test"
    assert_not_stored(BLOCK_PASSWORD)  # block documents are stored encrypted

    monkeypatch.delenv(notify.ENV_VAR)
    _, sent = run_failing_flow({"runtime": {"notify_url": "**********"}})
    assert sent == []  # nothing configured but a mask: nobody is told, nothing is sent to "**********"
