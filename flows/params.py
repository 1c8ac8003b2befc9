"""The pipeline's parameters: one typed pydantic model.

It is the `python -m flows.full` command line (one flag per field), the form a user fills in the
Prefect UI, and what deployments store. Descriptions here are the help text in both places.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field


class PipelineParams(BaseModel):
    """Everything a run of the full pipeline can be told."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Optional[Path] = Field(
        None, description="Kaggle-layout data directory (public/info.json, CSVs, image folders). "
        "Empty: the embedded synthetic sample, generated once under the output directory."
    )
    output_dir: Path = Field(Path("outputs"), description="Where run folders, caches and the sample go.")
    target: Literal["coarse", "fine"] = Field("coarse", description="Predict the 8 taxa or the 50 families.")
    seed: int = Field(42, description="One seed for the split, sampling and every model.")
    holdout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of train+val kept aside, before any resampling, to score every model."
    )
    holdout_mode: Literal["stratified", "kaggle-val"] = Field(
        "stratified", description="stratified: carve the hold-out from merged train+val; kaggle-val: use Kaggle's val split."
    )
    baselines: list[Literal["random_forest", "svm"]] = Field(
        default_factory=lambda: ["random_forest", "svm"], description="Pixel baselines to train."
    )
    pixel_size: int = Field(48, ge=8, le=256, description="Side of the grayscale images the pixel baselines see.")
    rf_n_estimators: int = Field(300, ge=1, description="Random Forest trees (the original project used 1000).")
    rf_max_depth: Optional[int] = Field(60, ge=1, description="Random Forest depth limit (original: 60).")
    svm_c: float = Field(10.0, gt=0, description="SVM regularisation C (original: 10).")
    svm_gamma: float = Field(0.001, gt=0, description="SVM rbf gamma (original: 0.001).")
    svm_max_samples: int = Field(5000, ge=10, description="SVM trains on at most this many images (kernel SVMs are O(n^2)).")
    sample_per_family: int = Field(36, ge=3, description="Embedded sample: labelled images per family.")
    sample_test_per_family: int = Field(8, ge=1, description="Embedded sample: test images per family.")
