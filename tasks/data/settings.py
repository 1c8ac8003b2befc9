"""Settings of the data stage: where the data is, what to predict, how to split and resample.

These pydantic sections are both the parameters a user sets (CLI flags, the Prefect UI form)
and the settings the data tasks take: each setting has exactly one default, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.data.sample import SampleSpec
from tasks.settings_fields import NonEmptyPath, Seed

Target = Literal["coarse", "fine"]
Resampling = Literal["none", "oversample", "undersample", "class-weights"]


class DataSettings(BaseModel):
    """Where the data is and where outputs go (shared by every flow's parameters)."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    data_dir: Optional[NonEmptyPath] = Field(
        None,
        description="Kaggle-layout data directory (public/info.json, CSVs, image folders). "
        "Empty: the embedded synthetic sample, generated once under the output directory.",
    )
    output_dir: NonEmptyPath = Field(Path("outputs"), description="Where run folders, caches and the sample go.")
    sample_per_family: int = Field(36, ge=3, description="Embedded sample: labelled images per family.")
    sample_test_per_family: int = Field(8, ge=1, description="Embedded sample: test images per family.")
    sample_planted_duplicates: int = Field(
        5,
        ge=0,
        description="Embedded sample: train images planted again as exact, resized+JPEG q50, 10%-cropped and "
        "mirrored copies across train, val and test, so a first run's data audit has duplicates to show "
        "(listed in sample/planted.json).",
    )
    sample_planted_label_errors: float = Field(
        0.01,
        ge=0.0,
        lt=0.5,
        description="Embedded sample: share of train labels switched to a family of another taxon (planted label "
        "errors for the audit to find; listed in sample/planted.json).",
    )

    def sample_spec(self) -> SampleSpec:
        """The embedded sample these settings ask for."""
        return SampleSpec(
            per_family=self.sample_per_family,
            test_per_family=self.sample_test_per_family,
            planted_originals=self.sample_planted_duplicates,
            planted_label_share=self.sample_planted_label_errors,
        )


class SplitSettings(BaseModel):
    """What to predict, the hold-out every model is scored on, and class-imbalance handling."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    target: Target = Field("coarse", description="Predict the 8 taxa or the 50 families.")
    seed: Seed = Field(42, description="One seed for the split, sampling and every model (0 to 2**32 - 1).")
    holdout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of train+val kept aside, before any resampling, to score every model."
    )
    holdout_mode: Literal["stratified", "kaggle-val"] = Field(
        "stratified",
        description="stratified: carve the hold-out from merged train+val; kaggle-val: use Kaggle's val split.",
    )
    resampling: Resampling = Field(
        "class-weights", description="Class-imbalance handling, applied to the train split only."
    )
    oversample_share: float = Field(
        0.5, gt=0, le=1, description="oversample: each class up to this share of the largest."
    )
    undersample_ratio: float = Field(
        3.0, ge=1, description="undersample: no class keeps more than this many times the smallest class."
    )
