"""Settings of the model stage: the scikit-learn baselines and the transfer-learning model.

Importable without TensorFlow, Keras or scikit-learn, so the CLI, the Prefect UI form and cache
keys cost nothing. Each section is both the parameters a user sets and the settings type the
model tasks take: each setting has exactly one default, here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional, Union

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field
from pydantic_core import PydanticCustomError

from tasks.settings_fields import positive_or_cv, refuse_non_finite

HeadKind = Literal["gap", "flatten-dense"]
Backbone = Literal["efficientnet_lite0", "mobilenetv2", "efficientnetv2s"]
PixelModel = Literal["random_forest", "svm"]
EmbeddingModel = Literal["logreg", "random_forest", "svm"]
Precision = Literal["auto", "float32", "mixed_bfloat16", "mixed_float16"]
#: An rbf gamma: the word ``scale`` or a finite number (nan/inf refused with one message, not one per member).
Gamma = Annotated[Union[Literal["scale"], float], BeforeValidator(refuse_non_finite)]
#: A probe's inverse L2 strength: ``cv`` (chosen by cross-validation, `tasks.models.strength`) or a positive number.
Strength = Annotated[Union[Literal["cv"], float], BeforeValidator(positive_or_cv), BeforeValidator(refuse_non_finite)]
#: The backbone weights that are not a file.
WEIGHT_WORDS = ("imagenet", "random")

#: Default square input size per backbone. Kept here, free of Keras, so that a flow can key its
#: caches without importing TensorFlow; `tasks.models.backbones` reads its specs' sizes from it.
DEFAULT_INPUT_SIZES: dict[str, int] = {"efficientnet_lite0": 224, "efficientnetv2s": 224, "mobilenetv2": 224}


def check_weights(value: str) -> str:
    """imagenet, random, or a file that exists: a mistyped path fails when the parameters are read,
    not after the data validation and the baselines, when the backbone is finally built."""
    if value in WEIGHT_WORDS:
        return value
    if not value.strip():
        raise PydanticCustomError("weights", "imagenet, random, or a local weights file; not an empty string")
    if not Path(value).expanduser().is_file():
        raise PydanticCustomError(
            "weights_file", "file {path} does not exist (or use imagenet or random)", {"path": value}
        )
    return value


#: ``TransferSettings.weights``: a word of `WEIGHT_WORDS` or an existing weights file.
WeightsChoice = Annotated[str, AfterValidator(check_weights)]


class BaselineSettings(BaseModel):
    """The scikit-learn models: on small grayscale pixels (the original project's baselines) and
    on the cached backbone features (a linear probe and friends).

    Every default stays bounded at full size (150k labelled images, ~120k training rows;
    ``python -m benchmarks.bench_baselines`` measures it): each Random Forest tree grows on a
    bootstrap of at most `rf_max_samples` images, so its fit time and saved size stop growing with
    the data (a training set below the cap is bootstrapped whole), and `rf_min_samples_leaf` bounds
    its nodes; the SVM approximates the rbf kernel with `svm_components` Nystroem landmarks under
    a linear SVM, so its prediction costs that many kernel evaluations per image instead of one
    per support vector (on the embedded sample it scored at least as well as the exact SVC). The original project's setup:
    ``--baselines.rf-n-estimators 1000 --baselines.rf-max-samples none
    --baselines.rf-min-samples-leaf 1 --baselines.svm-solver exact``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    pixel_models: list[PixelModel] = Field(
        ["random_forest", "svm"], description="Pixel baselines to train (none: an empty list)."
    )
    embedding_models: list[EmbeddingModel] = Field(
        ["logreg", "random_forest", "svm"],
        description="Classifiers trained on the cached backbone features (logreg = linear probe; none: an empty list).",
    )
    pixel_size: int = Field(48, ge=8, le=256, description="Side of the grayscale images the pixel baselines see.")
    rf_n_estimators: int = Field(300, ge=1, description="Random Forest trees (the original project used 1000).")
    rf_max_depth: Optional[int] = Field(
        60, ge=1, description="Random Forest depth limit on pixels (original: 60; empty: unlimited)."
    )
    rf_max_samples: Optional[int] = Field(
        4000,
        ge=1,
        description="Random Forests (pixels and features): images drawn for each tree's bootstrap, so that fit "
        "time and model size stop growing with the data (300 trees at 120k images, leaf >= 3: 36-81 s on 2 cores, "
        "69 MB with 8 classes, 285 MB with 50; benchmarks/bench_baselines); a smaller training set is bootstrapped whole "
        "(empty: always the whole training set, as the original project did).",
    )
    rf_min_samples_leaf: int = Field(
        3,
        ge=1,
        description="Random Forests (pixels and features): fewest images per leaf (original: 1, trees "
        "grown until pure); with the bootstrap cap it bounds the nodes per tree (leaf 1 with a 6,000 bootstrap "
        "saved 161 MB with 8 classes, 832 MB with 50, at 120k images).",
    )
    svm_solver: Literal["nystroem", "exact"] = Field(
        "nystroem",
        description="SVMs (pixels and features): nystroem = rbf kernel approximated from svm-components "
        "landmark images, then a linear SVM with the same C (fit linear in the subsample, prediction "
        "svm-components kernel evaluations per image); exact = scikit-learn's SVC, as the original project "
        "used (fit quadratic in the subsample, prediction one kernel evaluation per support vector).",
    )
    svm_components: int = Field(
        1024,
        ge=1,
        description="Nystroem SVM: landmark images, drawn from the training subsample, that approximate the rbf "
        "kernel; prediction costs this many kernel evaluations per image.",
    )
    svm_c: float = Field(10.0, gt=0, description="SVM regularisation C on pixels (original: 10).")
    svm_gamma: Gamma = Field(0.001, description="SVM rbf gamma on pixels (original: 0.001).")
    svm_max_samples: int = Field(
        5000,
        ge=10,
        description="SVMs train on at most this many images, drawn with the seed (the exact solver's fit is "
        "quadratic in them).",
    )
    logreg_c: Strength = Field(
        1.0,
        description="Linear probe: inverse L2 strength on standardised features; cv: chosen from a fixed grid by "
        "3-fold cross-validation on the training rows (at most 3,000 of them), and logged (on the sample it chose "
        "1 on every seed).",
    )
    rf_n_jobs: Optional[int] = Field(
        None,
        description="Random Forest fit threads (-1: every core). Empty: 1 on machines with at most 4 cores, where "
        "the forests run alongside TensorFlow's backbone pass and training, which use every core; -1 above that. "
        "Prediction always uses one thread, so a forest's vote sums, and so its ties, are the same everywhere.",
    )
    embedding_rf_max_depth: Optional[int] = Field(
        None, ge=1, description="Random Forest depth limit on backbone features (empty: unlimited)."
    )
    embedding_svm_c: float = Field(1.0, gt=0, description="SVM C on backbone features.")
    embedding_svm_gamma: Gamma = Field(
        "scale",
        description="SVM rbf gamma on backbone features (scale: 1 / (n_features * variance) of the training "
        "subsample, for either solver); the pixel gamma does not suit raw features.",
    )

    def on_embeddings(self) -> BaselineSettings:
        """The hyper-parameters the fitting code reads, with the backbone-feature values in place."""
        return self.model_copy(
            update={
                "rf_max_depth": self.embedding_rf_max_depth,
                "svm_c": self.embedding_svm_c,
                "svm_gamma": self.embedding_svm_gamma,
            }
        )


class TransferSettings(BaseModel):
    """The transfer-learning model; its JSON is part of the feature and checkpoint keys."""

    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    enabled: bool = Field(True, description="Train the transfer-learning model (stage 1 head, stage 2 fine-tuning).")
    preset: Literal["default", "original"] = Field(
        "default",
        description="original: the student project's settings (EfficientNetV2S 224 px, Flatten-Dense(512) "
        "head, Adam 1e-5 x10 then RMSprop 1e-6, all unfrozen); needs ImageNet weights for EfficientNetV2S.",
    )
    backbone: Backbone = Field(
        "efficientnet_lite0",
        description="Backbone; efficientnet_lite0's ImageNet weights ship with the package (offline).",
    )
    weights: WeightsChoice = Field(
        "imagenet", description="imagenet, random, or a local weights file (which must exist where the run starts)."
    )
    image_size: Optional[int] = Field(
        None, ge=32, le=600, description="Input size in pixels (empty: the backbone's default)."
    )
    head: HeadKind = Field(
        "gap", description="gap: pooled features -> Dropout -> Dense; flatten-dense: the original head."
    )
    dense_units: int = Field(512, ge=1, description="flatten-dense head: units of its hidden Dense layer.")
    dropout: float = Field(0.2, ge=0, lt=1, description="Dropout before the classifier.")
    batch_size: int = Field(32, ge=1, description="Images per batch.")
    feature_chunk: int = Field(
        2048,
        ge=1,
        description="Backbone pass: images per chunk, each cached on its own as it finishes (a killed run resumes "
        "from the last finished chunk).",
    )
    max_feature_gib: float = Field(
        8.0,
        gt=0,
        description="Refuse a run whose backbone features would take more GiB in memory (float32) than this, "
        "before the backbone pass (the flatten-dense head on 200,000 images needs about 47).",
    )
    views: int = Field(0, ge=0, le=10, description="Extra augmented views of each training image for stage 1.")
    stage1: Literal["probe", "train"] = Field(
        "probe",
        description="Stage 1 head: probe = the logistic-regression probe fitted to convergence and folded into the "
        "Dense layer (LP-FT); train = Adam with early stopping on the validation slice (the flatten-dense head "
        "always trains).",
    )
    stage1_c: Strength = Field(
        1.0,
        description="Stage 1 probe: inverse L2 strength on standardised features; cv: chosen from a fixed grid by "
        "3-fold cross-validation on the fit rows (at most 3,000 of them), recorded in training_history.json "
        "(docs/measurements.md: within noise on the sample, for about 15 s more).",
    )
    stage1_epochs: int = Field(60, ge=1, description="Stage 1 (frozen backbone, cached features) epoch limit.")
    stage1_optimizer: Literal["adam", "rmsprop", "sgd"] = Field("adam", description="Stage 1 optimizer.")
    stage1_lr: float = Field(3e-3, gt=0, description="Stage 1 learning rate.")
    stage1_patience: int = Field(
        8, ge=1, description="Stage 1 early-stopping patience (epochs without a better validation macro-F1)."
    )
    stage2_epochs: int = Field(2, ge=0, description="Stage 2 (fine-tuning) epoch limit; 0 skips stage 2.")
    stage2_max_images: Optional[int] = Field(
        None,
        ge=0,
        description="Stage 2 fine-tunes on a stratified draw of at most this many fit images (0: all of them). "
        "Empty: all on a GPU, 2,048 on a CPU, where one fine-tuning epoch over 100,000 images would take roughly "
        "half an hour to an hour on 2 cores; the stage-1 probe always sees every image, and stage 2 is published "
        "only when it beats it.",
    )
    stage2_optimizer: Literal["adam", "rmsprop", "sgd"] = Field("adam", description="Stage 2 optimizer.")
    stage2_lr: float = Field(1e-5, gt=0, description="Stage 2 learning rate.")
    stage2_patience: int = Field(2, ge=1, description="Stage 2 early-stopping patience.")
    stage2_schedule: Literal["warmup-cosine", "constant"] = Field(
        "warmup-cosine", description="Stage 2 learning rate: linear warm-up then cosine decay, or constant."
    )
    label_smoothing: float = Field(0.1, ge=0, lt=1, description="Stage 2 label smoothing.")
    unfreeze_blocks: int = Field(
        2, ge=0, description="Stage 2 unfreezes this many top backbone blocks (BatchNorm stays frozen)."
    )
    val_fraction: float = Field(0.15, gt=0, lt=0.5, description="Share of the TRAIN split used for early stopping.")
    precision: Precision = Field(
        "auto",
        description="Compute precision: auto = mixed_bfloat16 on GPUs with bf16 (compute capability >= 8.0), "
        "mixed_float16 on older GPUs, float32 on CPU.",
    )
    image_cache: bool = Field(
        False, description="Stage 2: keep decoded, resized training images on disk (uint8) after the first epoch."
    )

    def resolved(self) -> TransferSettings:
        """The settings a run trains with: the preset applied over the fields."""
        return seed_faithful_preset(self) if self.preset == "original" else self

    def input_size(self) -> int:
        """The requested size, or the backbone's default."""
        return resolve_input_size(self.backbone, self.image_size)


def resolve_input_size(backbone: str, image_size: int | None) -> int:
    """The requested size, or the backbone's default."""
    if image_size:
        return int(image_size)
    if backbone not in DEFAULT_INPUT_SIZES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(DEFAULT_INPUT_SIZES)}")
    return DEFAULT_INPUT_SIZES[backbone]


def seed_faithful_preset(settings: TransferSettings) -> TransferSettings:
    """The original project's settings (docs/original-project.md), for comparison: EfficientNetV2S at 224 px,
    Flatten -> Dense(512) -> Dropout(0.2) head, stage 1 Adam 1e-5 x 10 epochs, stage 2 RMSprop
    1e-6 with the whole backbone unfrozen, on every fit image. Its ImageNet weights need a download
    (or a local file)."""
    return settings.model_copy(
        update=dict(
            preset="original",
            backbone="efficientnetv2s",
            image_size=224,
            head="flatten-dense",
            dense_units=512,
            dropout=0.2,
            stage1_optimizer="adam",
            stage1_lr=1e-5,
            stage1_epochs=10,
            stage1_patience=10,
            stage1="train",
            stage2_optimizer="rmsprop",
            stage2_lr=1e-6,
            stage2_schedule="constant",
            stage2_max_images=0,
            label_smoothing=0.0,
            unfreeze_blocks=10_000,
        )
    )
