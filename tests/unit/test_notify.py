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
    state = Failed(message="Flow run encountered an exception: ValueError: bad labels\nTraceback (most recent...)")
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
