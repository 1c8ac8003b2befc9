"""The pipeline's parameters: one typed pydantic model.

It is the `python -m flows.full` command line (one flag per field), the form a user fills in the
Prefect UI, and what deployments store. Descriptions here are the help text in both places.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Optional

from pydantic import BaseModel, ConfigDict, Field

from tasks.validation import ValidationSettings


class DataLocation(BaseModel):
    """Where the data is and where outputs go: shared by every flow's parameters."""

    model_config = ConfigDict(extra="forbid")

    data_dir: Optional[Path] = Field(
        None, description="Kaggle-layout data directory (public/info.json, CSVs, image folders). "
        "Empty: the embedded synthetic sample, generated once under the output directory."
    )
    output_dir: Path = Field(Path("outputs"), description="Where run folders, caches and the sample go.")


class PipelineParams(DataLocation):
    """Everything a run of the full pipeline can be told."""

    target: Literal["coarse", "fine"] = Field("coarse", description="Predict the 8 taxa or the 50 families.")
    seed: int = Field(42, description="One seed for the split, sampling and every model.")
    holdout_fraction: float = Field(
        0.2, gt=0.0, lt=1.0, description="Share of train+val kept aside, before any resampling, to score every model."
    )
    holdout_mode: Literal["stratified", "kaggle-val"] = Field(
        "stratified", description="stratified: carve the hold-out from merged train+val; kaggle-val: use Kaggle's val split."
    )
    resampling: Literal["none", "oversample", "undersample", "class-weights"] = Field(
        "class-weights", description="Class-imbalance handling, applied to the train split only."
    )
    oversample_share: float = Field(0.5, gt=0, le=1, description="oversample: each class up to this share of the largest.")
    # Pixel baselines: the original project's Random Forest and SVM on small grayscale images.
    baselines: list[Literal["random_forest", "svm"]] = Field(
        default_factory=lambda: ["random_forest", "svm"], description="Pixel baselines to train (none: empty list)."
    )
    pixel_size: int = Field(48, ge=8, le=256, description="Side of the grayscale images the pixel baselines see.")
    rf_n_estimators: int = Field(300, ge=1, description="Random Forest trees (the original project used 1000).")
    rf_max_depth: Optional[int] = Field(60, ge=1, description="Random Forest depth limit (original: 60).")
    svm_c: float = Field(10.0, gt=0, description="SVM regularisation C (original: 10).")
    svm_gamma: float = Field(0.001, gt=0, description="SVM rbf gamma on pixels (original: 0.001).")
    svm_max_samples: int = Field(5000, ge=10, description="SVM trains on at most this many images (kernel SVMs are O(n^2)).")
    # Transfer learning.
    transfer: bool = Field(True, description="Train the transfer-learning model (stage 1 head, stage 2 fine-tuning).")
    preset: Literal["default", "original"] = Field(
        "default", description="original: the student project's settings (EfficientNetV2S 224 px, Flatten-Dense(512) "
        "head, Adam 1e-5 x10 then RMSprop 1e-6, all unfrozen); needs ImageNet weights for EfficientNetV2S."
    )
    backbone: Literal["efficientnet_lite0", "mobilenetv2", "efficientnetv2s"] = Field(
        "efficientnet_lite0", description="Backbone; efficientnet_lite0's ImageNet weights ship with the package (offline)."
    )
    weights: str = Field("imagenet", description="imagenet, random, or a local weights file.")
    image_size: Optional[int] = Field(None, ge=32, le=600, description="Input size in pixels (empty: the backbone's default).")
    head: Literal["gap", "flatten-dense"] = Field("gap", description="gap: pooled features -> Dropout -> Dense; flatten-dense: the original head.")
    batch_size: int = Field(32, ge=1, description="Images per batch.")
    views: int = Field(0, ge=0, le=10, description="Extra augmented views of each training image for stage 1.")
    stage1_epochs: int = Field(60, ge=1, description="Stage 1 (frozen backbone, cached features) epoch limit.")
    stage1_lr: float = Field(3e-3, gt=0, description="Stage 1 learning rate.")
    stage2_epochs: int = Field(2, ge=0, description="Stage 2 (fine-tuning) epoch limit; 0 skips stage 2.")
    stage2_lr: float = Field(1e-5, gt=0, description="Stage 2 learning rate.")
    unfreeze_blocks: int = Field(2, ge=0, description="Stage 2 unfreezes this many top backbone blocks (BatchNorm stays frozen).")
    image_cache: bool = Field(
        False, description="Stage 2: keep decoded, resized training images on disk (uint8) after the first epoch."
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of the TRAIN split used for early stopping.")
    embedding_baselines: list[Literal["logreg", "random_forest", "svm"]] = Field(
        default_factory=lambda: ["logreg", "random_forest", "svm"],
        description="Classifiers trained on the cached backbone features (logreg = linear probe).",
    )
    validation: ValidationSettings = Field(
        default_factory=ValidationSettings, description="Data validation thresholds (Great Expectations suites)."
    )
    # Publishing: the champion/challenger gate and Kaggle.
    gate_min_improvement: float = Field(
        0.0, ge=0, le=1, description="A new model replaces the champion only if its hold-out macro-F1 beats the champion's by more than this."
    )
    gate_max_class_f1_drop: float = Field(0.05, ge=0, le=1, description="...and no class's hold-out F1 drops by more than this.")
    force_promote: bool = Field(False, description="Replace the champion whatever the gate says (recorded as forced).")
    download: bool = Field(False, description="Download the Kaggle competition into --data-dir first (needs Kaggle credentials).")
    submit: bool = Field(False, description="Submit the champion's submission.csv to Kaggle at the end (needs Kaggle credentials).")
    submit_message: Optional[str] = Field(None, description="Kaggle submission message (empty: the champion's run, model and macro-F1).")
    competition: str = Field("living-thing-classification-coarse", description="Kaggle competition slug.")
    kaggle_secret_block: Optional[str] = Field(
        None, description='Prefect Secret block holding {"username", "key"}, used if no env vars or kaggle.json.'
    )
    refresh: bool = Field(False, description="Recompute every cached step (features, models) instead of reusing it.")
    task_runner: Literal["thread", "dask"] = Field(
        "thread", description="thread: tasks run in threads of the flow's process; dask: on a Dask cluster "
        "(a local one, one worker process per core, unless dask_address is set)."
    )
    dask_address: Optional[str] = Field(
        None, description="Scheduler address of an existing Dask cluster, e.g. tcp://10.0.0.5:8786 (with task_runner dask)."
    )
    notify_url: Optional[str] = Field(
        None, description='Webhook (http/https, JSON {"text": ...}) or Apprise URL told when a run fails; '
        "empty: $LIVING_THINGS_NOTIFY_URL, or nobody. Prefer the variable for secret URLs (parameters show in the UI)."
    )
    sample_per_family: int = Field(36, ge=3, description="Embedded sample: labelled images per family.")
    sample_test_per_family: int = Field(8, ge=1, description="Embedded sample: test images per family.")
