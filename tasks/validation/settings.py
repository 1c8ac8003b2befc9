"""The thresholds of data validation, as one pydantic model.

Kept apart from the validation code on purpose: ``flows.params`` builds the CLI flags and the
Prefect UI form from this model, so importing it must cost neither Great Expectations nor pandas.
"""

from __future__ import annotations

from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

#: Pillow's own default decompression-bomb limit (about 89.5 megapixels).
DEFAULT_MAX_PIXELS = 89_478_485


class ValidationSettings(BaseModel):
    """Thresholds of data validation (a field of the full pipeline's parameters, too)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    max_bad_image_fraction: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Largest share of train+val (and of test) images that may be unusable; they are "
        "quarantined (train/val) or get the fallback prediction (test). Above it validation fails.",
    )
    min_class_count: int = Field(
        5, ge=0, description="Warn when a coarse or fine class has fewer train+val images than this."
    )
    max_imbalance_ratio: float = Field(
        50.0, gt=0, description="Warn when largest/smallest class exceeds this (the real data is 18:1 coarse)."
    )
    reference: Literal["known", "previous"] = Field(
        "known",
        description="Label distribution to compare with: the real dataset's known one, or the "
        "last validated run's under <output-dir>/runs (a drift check; falls back to known).",
    )
    max_kl_divergence: float = Field(
        0.1, ge=0.0, description="Warn when the label distribution's KL divergence from the reference exceeds this."
    )
    min_rows: int = Field(1, ge=0, description="Fewest data rows each CSV must have.")
    max_rows: int = Field(10_000_000, ge=1, description="Most data rows a CSV may have.")
    min_short_side: int = Field(32, ge=1, description="Images with a shorter short side (px) are unusable.")
    max_image_pixels: int = Field(
        DEFAULT_MAX_PIXELS, ge=1, description="Images with more pixels are unusable (decompression bombs)."
    )
    scan_workers: Optional[int] = Field(None, ge=1, description="Image scan threads (empty: one per CPU).")
    max_examples: int = Field(5, ge=1, le=100, description="Offending rows or files quoted per failed rule.")
    drift_alpha: float = Field(
        0.01,
        gt=0.0,
        lt=1.0,
        description="Drift check against the champion (standalone validation): the data drifted when a "
        "Benjamini-Hochberg adjusted KS p-value of a backbone feature, or the label distribution's "
        "chi-square p-value, is below this.",
    )
    drift_images: int = Field(
        256,
        ge=0,
        description="Labelled images (a seeded subsample) whose backbone features the drift check compares "
        "with the champion's; 0 skips the backbone pass.",
    )
