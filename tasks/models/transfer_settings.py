"""Settings of the transfer-learning model, importable without loading TensorFlow/Keras."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

HeadKind = Literal["gap", "flatten-dense"]

#: Default square input size per backbone. Kept here, free of Keras, so that a flow can key its
#: caches without importing TensorFlow; `tasks.models.backbones` reads its specs' sizes from it.
DEFAULT_INPUT_SIZES: dict[str, int] = {"efficientnet_lite0": 224, "efficientnetv2s": 224, "mobilenetv2": 224}


def resolve_input_size(backbone: str, image_size: int | None) -> int:
    """The requested size, or the backbone's default."""
    if image_size:
        return int(image_size)
    if backbone not in DEFAULT_INPUT_SIZES:
        raise ValueError(f"unknown backbone {backbone!r}; choose one of {sorted(DEFAULT_INPUT_SIZES)}")
    return DEFAULT_INPUT_SIZES[backbone]


@dataclass(frozen=True)
class TransferSettings:
    """Everything that shapes the transfer model; its JSON is part of the checkpoint key."""

    backbone: str = "efficientnet_lite0"
    weights: str = "imagenet"
    image_size: int | None = None  # None: the backbone's default
    head: HeadKind = "gap"
    dense_units: int = 512  # flatten-dense head only
    dropout: float = 0.2
    batch_size: int = 32
    stage1_epochs: int = 60
    stage1_optimizer: str = "adam"
    stage1_lr: float = 3e-3
    stage1_patience: int = 8
    stage2_epochs: int = 2
    stage2_optimizer: str = "adam"
    stage2_lr: float = 1e-5
    stage2_patience: int = 2
    unfreeze_blocks: int = 2
    val_fraction: float = 0.15
    views: int = 0
    resampling: str = "class-weights"
    oversample_share: float = 0.5
    undersample_ratio: float = 3.0
    image_cache: bool = False  # stage 2: keep decoded, resized images on disk after the first epoch
    seed: int = 42


def seed_faithful_preset(settings: TransferSettings) -> TransferSettings:
    """The original project's settings (DESIGN §3), for comparison: EfficientNetV2S at 224 px,
    Flatten -> Dense(512) -> Dropout(0.2) head, stage 1 Adam 1e-5 x 10 epochs, stage 2 RMSprop
    1e-6 with the whole backbone unfrozen. Its ImageNet weights need a download (or a local file)."""
    return replace(
        settings, backbone="efficientnetv2s", image_size=224, head="flatten-dense", dense_units=512, dropout=0.2,
        stage1_optimizer="adam", stage1_lr=1e-5, stage1_epochs=10, stage1_patience=10,
        stage2_optimizer="rmsprop", stage2_lr=1e-6, unfreeze_blocks=10_000,
    )
