"""Tell someone when a flow run fails: a Prefect ``on_failure`` hook.

Where to: the run's ``notify_url`` parameter (``params.runtime.notify_url`` in the full flow's parameter
model, or a top-level ``notify_url``), else the ``LIVING_THINGS_NOTIFY_URL`` environment variable;
neither set: nothing is sent. ``http(s)://`` URLs get a JSON POST ``{"text": ...}`` (the shape
Slack, Mattermost and Teams-style incoming webhooks accept); anything else is handed to Apprise
(``mailto://``, ``slack://``, ``discord://``, ``ntfy://``, ``json://`` ...).

The message is short and carries no secrets: flow name, run name, final state and the first line
of its message. The URL itself is never logged (webhook URLs embed their tokens). The hook never
raises: a broken notifier must not change the outcome of the run it reports on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from tasks.logs import get_logger

__all__ = ["ENV_VAR", "format_message", "notify_on_failure", "notify_url_for", "send_notification"]

ENV_VAR = "LIVING_THINGS_NOTIFY_URL"
MAX_DETAIL_CHARS = 300
TIMEOUT_SECONDS = 10.0


def _lookup(container: Any, key: str) -> Any:
    """``container[key]`` or ``container.key`` (flow run parameters may be dicts or models)."""
    if isinstance(container, Mapping):
        return container.get(key)
    return getattr(container, key, None)


def notify_url_for(parameters: Any, environ: Mapping[str, str] | None = None) -> str | None:
    """The URL to notify for a run with these parameters, or None when none is configured."""
    url = _lookup(parameters, "notify_url") if parameters is not None else None
    if not url and parameters is not None:
        params = _lookup(parameters, "params")
        url = _lookup(_lookup(params, "runtime"), "notify_url") or _lookup(params, "notify_url")
    if not url:
        url = (os.environ if environ is None else environ).get(ENV_VAR)
    url = str(url).strip() if url else ""
    return url or None


def format_message(flow_name: str, run_name: str, state_name: str, state_message: str | None) -> str:
    """One or two short lines: what failed, and why in a sentence."""
    lines = (state_message or "").strip().splitlines()
    detail = lines[0].strip() if lines else "no message"
    if len(detail) > MAX_DETAIL_CHARS:
        detail = detail[: MAX_DETAIL_CHARS - 3] + "..."
    return f"Prefect flow run {flow_name}/{run_name} ended {state_name}: {detail}"


def send_notification(url: str, text: str, title: str = "living-things pipeline") -> bool:
    """Send ``text`` to ``url``; True when delivered. Raises nothing."""
    scheme = url.split("://", 1)[0].lower() if "://" in url else "?"
    try:
        if scheme in ("http", "https"):
            import httpx

            response = httpx.post(url, json={"text": text}, timeout=TIMEOUT_SECONDS)
            response.raise_for_status()
            return True
        import apprise

        notifier = apprise.Apprise()
        if not notifier.add(url):
            get_logger(__name__).warning(
                "Failure notification not sent: Apprise does not understand the %s:// URL", scheme
            )
            return False
        if notifier.notify(title=title, body=text):
            return True
        get_logger(__name__).warning("Failure notification via %s:// was not delivered", scheme)
        return False
    except Exception as exc:  # never let the notifier change the run's outcome
        get_logger(__name__).warning("Failure notification via %s:// failed: %s", scheme, type(exc).__name__)
        return False


def notify_on_failure(flow: Any, flow_run: Any, state: Any) -> None:
    """Prefect flow hook (``on_failure=[notify_on_failure]``, also fits ``on_crashed``)."""
    try:
        url = notify_url_for(getattr(flow_run, "parameters", None))
        if url is None:
            return
        text = format_message(
            getattr(flow, "name", "?"),
            getattr(flow_run, "name", "?"),
            getattr(state, "name", None) or "Failed",
            getattr(state, "message", None),
        )
        if send_notification(url, text):
            get_logger(__name__).info("Sent a failure notification.")
    except Exception as exc:
        get_logger(__name__).warning("Failure notification skipped: %s", type(exc).__name__)
