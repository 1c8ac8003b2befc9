"""The ``tracking`` section of the parameters: whether and where runs are recorded in MLflow."""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field


class TrackingSettings(BaseModel):
    """MLflow tracking: on by default, into an SQLite file in the output directory (no server)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(
        True,
        description="Record the run in MLflow (parameters, hold-out metrics, files, models, the champion alias). "
        "A tracking failure is one warning, never a failed run.",
    )
    uri: Optional[str] = Field(
        None,
        description="MLflow tracking URI (a team server, http://HOST:5000). Empty: $MLFLOW_TRACKING_URI, else "
        "sqlite:///<output-dir>/mlflow.db with artifacts in <output-dir>/mlartifacts.",
    )
    experiment: str = Field("living-things", min_length=1, description="MLflow experiment the runs go into.")
    log_models: bool = Field(
        True,
        description="Log every model's file (skops or .keras, never pickle) with its inputs recipe, and register "
        "the gated candidate as a version of living-things-<target>.",
    )
    ui_url: Optional[str] = Field(
        None,
        description="Where the MLflow UI is, for links from Prefect (empty: the tracking URI itself for a server, "
        "http://127.0.0.1:5000 for the embedded store, what `make mlflow-ui` serves).",
    )
    request_timeout_s: int = Field(
        10, ge=1, description="Seconds an HTTP request to a tracking server may take (no retries: one warning)."
    )
