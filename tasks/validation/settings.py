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


class AuditSettings(BaseModel):
    """The data audit: duplicates and leakage, unusable images, label-issue candidates.

    Read by validation (hash duplicates, image issues: ``tasks.validation.audit``) and by the
    audit on backbone features (near duplicates, label issues: ``tasks.audit``). The duplicate
    thresholds come from the experiment in ``tests/data/test_audit.py`` (docs/audit.md).
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    feature_audit: bool = Field(
        True,
        description="Run the audit on backbone features after the split (near duplicates, label issues, the "
        "report's gallery). Off: only validation's hash duplicates and image issues are audited.",
    )
    phash_max_distance: int = Field(
        6,
        ge=-1,
        le=32,
        description="Images whose 64-bit perceptual hashes differ in at most this many bits are duplicates (the image "
        "against the other's image, mirror image, centre and mirrored centre); -1 keeps only exact (same bytes) "
        "duplicates. Measured on the embedded sample with 60 originals x 4 planted copies "
        "(python -m benchmarks.bench_audit): every exact, resized+JPEG q50, 10%-cropped and mirrored copy within 4 "
        "bits; distinct pairs: none within 6, 2 within 8, 21 within 10 of 2,975,580",
    )
    feature_min_similarity: float = Field(
        0.93,
        gt=0.0,
        le=1.0,
        description="Near-duplicate candidates from backbone features: images whose feature vectors' cosine "
        "similarity is at least this (colour changes and crops other than the hashes' 10%). On the embedded sample the "
        "most similar distinct images reach 0.897 (739 pairs at 0.8), so candidates are listed, and act on the split "
        "only with exclude_near_duplicates.",
    )
    exclude_near_duplicates: bool = Field(
        False,
        description="Take the training members of a feature-found group that crosses into the hold-out out of "
        "training (the hold-out never changes). Off by default: backbone similarity also pairs distinct images.",
    )
    feature_neighbours: int = Field(
        5, ge=1, le=100, description="Nearest neighbours per image searched for near duplicates (faiss)."
    )
    min_contrast: float = Field(
        4.0, ge=0.0, description="Grey-level standard deviation (0-255) below which an image is near-constant."
    )
    dark_below: float = Field(20.0, ge=0.0, le=255.0, description="Mean grey level below which an image is very dark.")
    bright_above: float = Field(
        235.0, ge=0.0, le=255.0, description="Mean grey level above which an image is very bright."
    )
    small_below: int = Field(
        48, ge=1, description="Short side (px) below which an image is flagged very small (a warning)."
    )
    max_aspect_ratio: float = Field(
        4.0, ge=1.0, description="Long side / short side above which an image is flagged as extremely elongated."
    )
    max_image_issue_fraction: float = Field(
        1.0,
        ge=0.0,
        le=1.0,
        description="Largest share of images with an image issue (dark, bright, near-constant, small, elongated); "
        "above it validation fails. 1 (the default): issues are warnings only.",
    )
    label_issues: bool = Field(
        True, description="Look for label-issue candidates (cleanlab on a k-fold probe of the cached features)."
    )
    label_folds: int = Field(5, ge=2, le=20, description="Folds of the out-of-sample probe for label issues.")
    label_repeats: int = Field(
        3,
        ge=1,
        le=10,
        description="k-fold passes (each shuffled anew) whose out-of-sample probabilities are averaged for label "
        "issues: 3 put 0.77 of switched labels among the top candidates on the sample, 1 put 0.74 (docs/audit.md).",
    )
    label_max_images: int = Field(
        50_000,
        ge=0,
        description="Budget of the label-issue pass: at most this many labelled images (a seeded, stratified "
        "subsample beyond it); 0 for all.",
    )
    exclude_label_issues: bool = Field(
        False,
        description="Drop the top label-issue candidates from training (never from the hold-out); the run says how many.",
    )
    exclude_max_fraction: float = Field(
        0.05,
        ge=0.0,
        le=1.0,
        description="With exclude_label_issues: at most this share of the training images is dropped, most likely "
        "wrong labels first.",
    )

    @property
    def changes_training(self) -> bool:
        """Whether the audit may take training rows out of the split (then it runs before training)."""
        return self.feature_audit and (self.exclude_label_issues or self.exclude_near_duplicates)
