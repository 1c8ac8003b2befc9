"""The pipeline's parameters: one typed pydantic model made of sections.

It is the `python -m flows.full` command line (one flag per field, grouped by section), the form
a user fills in the Prefect UI (one group per section), and what deployments store. Each section
*is* the settings type its tasks take (defined next to them, under ``tasks/<stage>/settings.py``),
so every setting has exactly one default and one description.
"""

from __future__ import annotations

import re
from typing import Annotated, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr
from pydantic_core import PydanticCustomError

from tasks.data.settings import DataSettings, SplitSettings
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.results.settings import GateSettings, KaggleSettings
from tasks.tracking.settings import TrackingSettings
from tasks.validation.settings import AuditSettings, ValidationSettings

#: Dask's address forms without distributed installed: ``[scheme://]host:port`` or ``inproc://...``.
DASK_ADDRESS = re.compile(r"^(?:(?:tcp|tls|ucx|ws|wss)://)?(?:\[[0-9A-Fa-f:.]+\]|[^\s:/\[\]]+):\d{1,5}$|^inproc://\S+$")


def dask_address_problem(address: str) -> str | None:
    """Why Dask could not connect to ``address`` (None: it parses), judged by Dask's own parser
    when distributed is installed, so a typo fails before a server starts, not at connect time."""
    try:
        from distributed.comm.addressing import parse_address, parse_host_port
        from distributed.comm.registry import backends
    except ImportError:
        return None if DASK_ADDRESS.match(address) else "no [scheme://]host:port"
    try:
        scheme, location = parse_address(address, strict=False)
        if scheme not in backends:
            return f"unknown scheme {scheme}:// (Dask knows {', '.join(sorted(backends))})"
        if scheme == "inproc":
            return None if location else "inproc:// needs an address"
        host, port = parse_host_port(location)
    except ValueError as exc:  # e.g. "missing port number in address 'garbage'"
        return str(exc)
    return None if host and 0 < int(port) < 65536 else "a host and a port of 1 to 65535 are needed"


def check_dask_address(address: str) -> str:
    """The address, stripped; refused with the reason Dask would give."""
    address = address.strip()
    problem = dask_address_problem(address)
    if problem is not None:
        raise PydanticCustomError(
            "dask_address",
            "{address} is not a Dask scheduler address (tcp://HOST:PORT, tls://, ucx://, inproc://): {problem}",
            {"address": address, "problem": problem},
        )
    return address


DaskAddress = Annotated[str, AfterValidator(check_dask_address)]


class RuntimeSettings(BaseModel):
    """How a run executes: caching, where tasks run, who hears about failures."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    refresh: bool = Field(False, description="Recompute every cached step (features, models) instead of reusing it.")
    task_runner: Literal["thread", "dask"] = Field(
        "thread",
        description="thread: tasks run in threads of the flow's process; dask: on a Dask cluster "
        "(a local one, one worker process per core, unless dask_address is set).",
    )
    dask_address: Optional[DaskAddress] = Field(
        None,
        description="Scheduler address of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (with task_runner dask).",
    )
    notify_url: Optional[SecretStr] = Field(
        None,
        description='Webhook (http/https, JSON {"text": ...}) or Apprise URL told when a run fails. A secret: '
        "Prefect stores and shows it as ********** when the flow is called in-process (python -m flows.full), "
        "but a deployment run's form or JSON parameters are stored as typed, so there use notify_secret_block "
        "or $LIVING_THINGS_NOTIFY_URL. Empty (or a masked copy): notify_secret_block, then "
        "$LIVING_THINGS_NOTIFY_URL, else nobody.",
    )
    notify_secret_block: Optional[str] = Field(
        None,
        description="Name of a Prefect Secret block holding the notify URL (the name is stored, the URL is not); "
        "used when notify_url is empty.",
    )
    wait: bool = Field(
        True,
        description="When another run holds the output directory (its .lock): wait for it to finish; "
        "off (--no-wait): stop at once with a message naming that run.",
    )


class PipelineParams(BaseModel):
    """Everything a run of the full pipeline can be told, one section per stage."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    data: DataSettings = Field(DataSettings(), description="Where the data is and where outputs go.")
    split: SplitSettings = Field(SplitSettings(), description="What to predict, the hold-out, class imbalance.")
    validation: ValidationSettings = Field(
        ValidationSettings(), description="Data validation thresholds (Great Expectations suites)."
    )
    audit: AuditSettings = Field(
        AuditSettings(), description="The data audit: duplicates and leakage, image issues, label-issue candidates."
    )
    baselines: BaselineSettings = Field(
        BaselineSettings(), description="scikit-learn models on pixels and on backbone features."
    )
    transfer: TransferSettings = Field(TransferSettings(), description="The transfer-learning model (two stages).")
    gate: GateSettings = Field(GateSettings(), description="When a run's best model replaces the champion.")
    kaggle: KaggleSettings = Field(KaggleSettings(), description="Kaggle download and submission.")
    runtime: RuntimeSettings = Field(RuntimeSettings(), description="Caching, task runner, notifications.")
    tracking: TrackingSettings = Field(
        TrackingSettings(), description="MLflow: parameters, metrics, models and the champion alias of every run."
    )


#: Flags of the flat command line before the parameters had sections, where the flat name of
#: the field is not the same: ``--old-name`` keeps working as an alias of ``--section.field``.
LEGACY_FLAGS: dict[str, str] = {
    "baselines": "baselines.pixel_models",
    "embedding_baselines": "baselines.embedding_models",
    "transfer": "transfer.enabled",
    "gate_min_improvement": "gate.min_improvement",
    "gate_max_class_f1_drop": "gate.max_class_f1_drop",
}
