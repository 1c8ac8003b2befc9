"""The failure notification hook: a local webhook receives it; no URL, no message; never raises."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from types import SimpleNamespace
from typing import Any

import pytest
from prefect.states import Failed

from flows import notify
from flows.notify import ENV_VAR, format_message, notify_on_failure, notify_url_for, send_notification


class Webhook:
    """A webhook receiver on 127.0.0.1 that records JSON bodies."""

    def __init__(self, status: int = 200) -> None:
        self.received: list[dict[str, Any]] = []
        self.paths: list[str] = []
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                hook.paths.append(self.path)
                hook.received.append(json.loads(body or b"{}"))
                self.send_response(status)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = HTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/hooks/secret-token"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    def __enter__(self) -> Webhook:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def webhook() -> Iterator[Webhook]:
    with Webhook() as hook:
        yield hook


@pytest.fixture(autouse=True)
def no_env_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)


def failed_run(parameters: dict[str, Any]) -> tuple[Any, Any, Any]:
    flow = SimpleNamespace(name="living-things-full")
    flow_run = SimpleNamespace(name="brave-otter", parameters=parameters)
    state: Any = Failed(message="Flow run encountered an exception: ValueError: bad labels\nTraceback (most recent...)")
    return flow, flow_run, state


def test_webhook_receives_a_short_message(webhook: Webhook) -> None:
    notify_on_failure(*failed_run({"params": {"runtime": {"notify_url": webhook.url}, "data": {"output_dir": "out"}}}))
    assert len(webhook.received) == 1 and webhook.paths == ["/hooks/secret-token"]
    text = webhook.received[0]["text"]
    assert (
        text == "Prefect flow run living-things-full/brave-otter ended Failed: "
        "Flow run encountered an exception: ValueError: bad labels"
    )
    assert "Traceback" not in text and "secret-token" not in text


def test_top_level_parameter_and_environment_variable(webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    notify_on_failure(*failed_run({"notify_url": webhook.url}))
    monkeypatch.setenv(ENV_VAR, webhook.url)
    notify_on_failure(*failed_run({"params": {"output_dir": "out"}}))
    assert len(webhook.received) == 2


def test_parameter_wins_over_environment() -> None:
    params = {"params": SimpleNamespace(notify_url="https://a.example/hook")}
    assert notify_url_for(params, environ={ENV_VAR: "https://b.example/hook"}) == "https://a.example/hook"
    assert (
        notify_url_for({"params": {"notify_url": None}}, environ={ENV_VAR: " https://b.example "})
        == "https://b.example"
    )


def test_no_url_sends_nothing(webhook: Webhook, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[Any] = []
    monkeypatch.setattr(notify, "send_notification", lambda *a, **k: calls.append(a))
    notify_on_failure(*failed_run({"params": {"notify_url": None, "output_dir": "out"}}))
    notify_on_failure(*failed_run({}))
    notify_on_failure(SimpleNamespace(name="f"), SimpleNamespace(name="r", parameters=None), Failed())
    assert calls == [] and webhook.received == []


def test_unreachable_or_rejecting_webhook_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with Webhook() as closed:
        url = closed.url
    assert send_notification(url, "x") is False  # connection refused
    with Webhook(status=500) as failing:
        notify_on_failure(*failed_run({"notify_url": failing.url}))
        assert len(failing.received) == 1
    assert "secret-token" not in caplog.text
    notify_on_failure(None, None, None)  # nonsense in, nothing out


def test_apprise_urls_go_through_apprise(webhook: Webhook) -> None:
    # Apprise's json:// service posts a JSON document to a web server: our local one.
    assert send_notification(f"json://127.0.0.1:{webhook.port}/apprise", "hello", title="t") is True
    assert webhook.paths == ["/apprise"] and webhook.received[0]["message"] == "hello"
    assert send_notification("notaservice://nowhere", "x") is False


def test_long_messages_are_cut() -> None:
    text = format_message("f", "r", "Crashed", "x" * 1000)
    assert len(text) < 400 and text.endswith("...")
    assert format_message("f", "r", "Failed", None).endswith("no message")


SECRET_URL = "https://user:hunter2@hooks.example/T0/B0"


def test_secret_parameter_is_revealed_and_a_masked_copy_counts_as_unset() -> None:
    from pydantic import SecretStr

    from flows.params import PipelineParams, RuntimeSettings

    params = PipelineParams(runtime=RuntimeSettings(notify_url=SECRET_URL))
    assert notify_url_for({"params": params}, environ={}) == SECRET_URL
    assert notify_url_for({"notify_url": SecretStr(SECRET_URL)}, environ={}) == SECRET_URL
    masked = {"params": {"runtime": {"notify_url": "**********"}}}  # the API's copy of the same run
    assert notify_url_for(masked, environ={}) is None
    assert notify_url_for(masked, environ={ENV_VAR: "https://env.example"}) == "https://env.example"


def test_secret_block_comes_after_the_url_and_before_the_environment() -> None:
    blocks = {"team-webhook": "https://block.example/hook"}
    looked_up: list[str] = []

    def load(name: str) -> str | None:
        looked_up.append(name)
        return blocks.get(name)

    env = {ENV_VAR: "https://env.example"}
    runtime = {"notify_url": "**********", "notify_secret_block": "team-webhook"}
    assert notify_url_for({"params": {"runtime": runtime}}, env, load) == "https://block.example/hook"
    runtime = {"notify_url": SECRET_URL, "notify_secret_block": "team-webhook"}
    assert notify_url_for({"params": {"runtime": runtime}}, env, load) == SECRET_URL
    assert notify_url_for({"params": {"runtime": {"notify_secret_block": "gone"}}}, env, load) == "https://env.example"
    assert looked_up == ["team-webhook", "gone"]


def test_a_missing_secret_block_is_a_warning_naming_it(caplog: pytest.LogCaptureFixture) -> None:
    def broken_load(name: str, _sync: bool = True) -> Any:
        raise ValueError(f"Unable to find block document named {name}")

    import prefect.blocks.system

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(prefect.blocks.system.Secret, "load", broken_load)
        assert notify.secret_block_value("no-such-block") is None
    assert "no-such-block" in caplog.text


def test_hook_outside_the_run_reads_the_api_copy() -> None:
    from flows.notify import run_parameters

    flow_run = SimpleNamespace(id="not-this-context", parameters={"notify_url": "**********"})
    assert run_parameters(flow_run) == {"notify_url": "**********"}
    assert run_parameters(None) is None
