"""Settings of the results stage: the champion gate and Kaggle (download and submission).

Each section is both the parameters a user sets and the settings the results tasks take: each
setting has exactly one default, here.
"""

from __future__ import annotations

from typing import Optional

from pydantic import BaseModel, ConfigDict, Field

#: The Kaggle competition whose layout and submission format the pipeline follows (docs/dataset.md).
DEFAULT_COMPETITION = "living-thing-classification-coarse"


class GateSettings(BaseModel):
    """How much better a challenger must be to replace the champion (TFX's "blessing")."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    min_improvement: float = Field(
        0.0,
        ge=0.0,
        le=1.0,
        description="A new model replaces the champion only if the lower bound of the interval of its hold-out "
        "macro-F1 minus the champion's (paired bootstrap on the same images) is above this.",
    )
    confidence: float = Field(
        0.95,
        gt=0.5,
        lt=1.0,
        description="...at this level (the interval's level; the point difference is used, and the decision says "
        "so, when both models' predictions of the same hold-out images are not available).",
    )
    max_class_f1_drop: float = Field(
        0.05, ge=0.0, le=1.0, description="...and no class's hold-out F1 drops by more than this."
    )
    force_promote: bool = Field(False, description="Replace the champion whatever the gate says (recorded as forced).")
    rescore_champion: bool = Field(
        True,
        description="When the champion was measured on other images (new data, another hold-out), run its saved "
        "model on this run's hold-out images it never trained on and compare both there (off: refuse to compare).",
    )
    export_check_rows: int = Field(
        256,
        ge=0,
        description="Before a promotion the candidate's saved model is reloaded in a fresh process and must "
        "reproduce its recorded predictions on up to this many hold-out images (evenly spaced); 0 skips the check.",
    )
    export_check_timeout_s: float = Field(
        900.0, gt=0, description="...and must do so within this many seconds, or it is not promoted."
    )


class KaggleSettings(BaseModel):
    """The Kaggle competition: download its data first, submit the champion's file at the end.

    No field holds a secret: the credentials come from the environment, kaggle.json or the Secret
    block named here (a name is not a secret), never from the parameters Prefect stores."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    download: bool = Field(
        False, description="Download the Kaggle competition into the data dir first (needs Kaggle credentials)."
    )
    submit: bool = Field(
        False, description="Submit the champion's submission.csv to Kaggle at the end (needs Kaggle credentials)."
    )
    submit_message: Optional[str] = Field(
        None, description="Kaggle submission message (empty: the champion's run, model and macro-F1)."
    )
    competition: str = Field(DEFAULT_COMPETITION, description="Kaggle competition slug.")
    kaggle_secret_block: Optional[str] = Field(
        None, description='Prefect Secret block holding {"username", "key"}, used if no env vars or kaggle.json.'
    )
