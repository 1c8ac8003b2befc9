"""Tell someone when a flow run fails: a Prefect ``on_failure`` hook.

Where to: the run's ``notify_url`` parameter (``params.runtime.notify_url`` in the full flow's parameter
model, or a top-level ``notify_url``), else the Prefect Secret block named by ``notify_secret_block``,
else the ``LIVING_THINGS_NOTIFY_URL`` environment variable; none set: nothing is sent.

The URL is a secret (``pydantic.SecretStr``): Prefect stores the parameters of an in-process call
masked (``**********``), and the ``flow_run`` a hook receives is the API's copy. So the hook reads
the parameters the flow function got in this process (the run context, when it is this run's),
and a masked value counts as not set (a deployment run of a copied masked value falls through to the
block and the variable). ``http(s)://`` URLs get a JSON POST ``{"text": ...}`` (the shape
Slack, Mattermost and Teams-style incoming webhooks accept); anything else is handed to Apprise
(``mailto://``, ``slack://``, ``discord://``, ``ntfy://``, ``json://`` ...).

The message is short and carries no secrets: flow name, run name, final state and the first line
of its message. The URL itself is never logged (webhook URLs embed their tokens). The hook never
raises: a broken notifier must not change the outcome of the run it reports on.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import SecretStr

from tasks.logs import get_logger

__all__ = [
    "ENV_VAR",
    "format_message",
    "notify_on_failure",
    "notify_url_for",
    "run_parameters",
    "secret_block_value",
    "send_notification",
]

ENV_VAR = "LIVING_THINGS_NOTIFY_URL"
MAX_DETAIL_CHARS = 300
TIMEOUT_SECONDS = 10.0


def _lookup(container: Any, key: str) -> Any:
    """``container[key]`` or ``container.key`` (flow run parameters may be dicts or models)."""
    if isinstance(container, Mapping):
        return container.get(key)
    return getattr(container, key, None)


def _runtime_value(parameters: Any, key: str) -> Any:
    """``key`` as a top-level parameter, in ``params.runtime`` (the full flow) or in ``params``."""
    if parameters is None:
        return None
    value = _lookup(parameters, key)
    if not value:
        params = _lookup(parameters, "params")
        value = _lookup(_lookup(params, "runtime"), key) or _lookup(params, key)
    return value


def reveal(value: Any) -> str | None:
    """The text of a URL parameter: a SecretStr unwrapped; empty, or the all-asterisk mask that
    Prefect's stored copy of a SecretStr holds, is None (sending to "**********" helps nobody)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    text = str(value).strip() if value else ""
    return text if text.strip("*") else None


def secret_block_value(name: str) -> str | None:
    """The text of the Prefect Secret block ``name`` (None, with a warning naming the block, when
    it cannot be loaded): deployments keep the URL there, out of the parameters Prefect stores."""
    try:
        from prefect.blocks.system import Secret

        value = Secret.load(name, _sync=True).get()  # type: ignore[call-arg, union-attr]  # sync call
    except Exception as exc:
        get_logger(__name__).warning("Notify Secret block %r could not be loaded: %s", name, type(exc).__name__)
        return None
    return value if isinstance(value, str) else None


def notify_url_for(
    parameters: Any,
    environ: Mapping[str, str] | None = None,
    load_secret: Callable[[str], str | None] = secret_block_value,
) -> str | None:
    """The URL to notify for a run with these parameters, or None when none is configured:
    ``notify_url``, else the Secret block ``notify_secret_block``, else ``$LIVING_THINGS_NOTIFY_URL``."""
    url = reveal(_runtime_value(parameters, "notify_url"))
    block = _runtime_value(parameters, "notify_secret_block")
    if url is None and block:
        url = reveal(load_secret(str(block)))
    if url is None:
        url = reveal((os.environ if environ is None else environ).get(ENV_VAR))
    return url


def run_parameters(flow_run: Any) -> Any:
    """The parameters of ``flow_run`` with their secrets: those the flow function got in this
    process when the hook runs inside that run's context; else the API's copy (secrets masked).

    The run ids must match: a subflow's crash hook may run in its parent's context."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    run_id = getattr(flow_run, "id", None)
    if context is not None and context.flow_run is not None and run_id is not None:
        if context.flow_run.id == run_id and context.parameters is not None:
            return context.parameters
    return getattr(flow_run, "parameters", None)


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
        url = notify_url_for(run_parameters(flow_run))
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
