"""What the transfer settings cost at a dataset's size, said before any work is done.

The original project's Flatten head keeps the backbone's whole last feature map per image
(7 x 7 x 1280 values at 224 px, 49 times the pooled features): at the competition's 200,000
images that is about 47 GiB of float32 features in memory and half of it on disk, where the
pooled default needs under 1 GiB. Stage 1 and the classifiers on features hold them in memory, so
above `TransferSettings.max_feature_gib` a run stops with `FeaturesTooLarge`, saying what to
change, instead of swapping or being killed an hour into the backbone pass. ``--preset
original`` also gets a warning with its estimated size and CPU time at the run's size.
"""

from __future__ import annotations

import math

from tasks.models.settings import TransferSettings

#: Backbone-pass images/s from JPEG files on a 2-core CPU, for the estimate only. Lite0: 44, as
#: `benchmarks.bench_scale` measured over 10,000 images; the others scaled by their bare
#: forward-pass speed relative to Lite0 (`benchmarks.bench_backbones` at 224 px, batch 32, in one
#: run: Lite0 83, EfficientNetV2S 19.6, MobileNetV2 74 images/s).
CPU_IMAGES_PER_S = {"efficientnet_lite0": 44.0, "mobilenetv2": 44.0 * 74 / 83, "efficientnetv2s": 44.0 * 19.6 / 83}
#: A fine-tuning step with the whole backbone unfrozen costs about this many forward passes.
TRAIN_STEP_COST = 3.0


#: Stage 2's default image budget on a CPU (`TransferSettings.stage2_max_images`): there its cost
#: grew with the fit images (n^0.89 in `benchmarks.bench_scale`, 0.81 h extrapolated to 200,000
#: images on a 2-core CPU); with this budget it grows as n^0.45 (0.11 h; 204 s -> 98 s
#: at 10,000 images, about 5,600 fit images). GPUs fine-tune on every image.
CPU_STAGE2_IMAGES = 2048


def stage2_budget(requested: int | None, n_gpus: int) -> int:
    """Most fit images stage 2 trains on (0: all): ``requested``, else all on GPUs and
    `CPU_STAGE2_IMAGES` on a CPU."""
    if requested is not None:
        return requested
    return 0 if n_gpus else CPU_STAGE2_IMAGES


class FeaturesTooLarge(ValueError):
    """The backbone features of these settings would not fit in the memory budget."""


def feature_values(settings: TransferSettings) -> int:
    """Values per image of the cached features: the pooled vector, or the whole last feature map."""
    from tasks.models.backbones import BACKBONES

    channels = BACKBONES[settings.backbone].feature_dim
    side = math.ceil(settings.input_size() / 32)  # all three backbones downsample by 32
    return channels if settings.head == "gap" else side * side * channels


def feature_gib(settings: TransferSettings, n_images: int, n_train: int) -> float:
    """GiB of float32 features in memory (every image, plus the augmented views of the train rows)."""
    rows = n_images + settings.views * n_train
    return rows * feature_values(settings) * 4 / 2**30


def check_feature_memory(settings: TransferSettings, n_images: int, n_train: int) -> None:
    """Raise `FeaturesTooLarge` when the features exceed ``settings.max_feature_gib``."""
    need = feature_gib(settings, n_images, n_train)
    if need <= settings.max_feature_gib:
        return
    raise FeaturesTooLarge(
        f"the {settings.head} head's backbone features for {n_images:,} images would take {need:.3g} GiB in "
        f"memory ({feature_values(settings):,} values per image), over --transfer.max-feature-gib "
        f"{settings.max_feature_gib:g}: use --transfer.head gap (pooled features, "
        f"{feature_gib(settings.model_copy(update={'head': 'gap'}), n_images, n_train):.3g} GiB), a smaller "
        "--transfer.image-size or fewer --transfer.views, or raise the limit on a machine with that much memory"
    )


def cpu_hours(settings: TransferSettings, n_images: int, n_train: int) -> float:
    """Rough CPU hours of the backbone pass plus stage-2 fine-tuning (stage 1 on cached features is minutes)."""
    rate = CPU_IMAGES_PER_S[settings.backbone] * (settings.input_size() / 224) ** -2
    forward = (n_images + settings.views * n_train) / rate
    budget = stage2_budget(settings.stage2_max_images, n_gpus=0)
    fine_tune = settings.stage2_epochs * min(n_train, budget or n_train) * TRAIN_STEP_COST / rate
    return (forward + fine_tune) / 3600


def preset_warning(settings: TransferSettings, n_images: int, n_train: int) -> str | None:
    """The warning ``--preset original`` gets at this size (None for other presets)."""
    if settings.preset != "original":
        return None
    disk = feature_gib(settings, n_images, n_train) / 2  # float16 on disk
    return (
        f"--preset original on {n_images:,} images: backbone features of about {disk:.1f} GiB on disk and "
        f"{2 * disk:.1f} GiB in memory, and roughly {cpu_hours(settings, n_images, n_train):.1f} h of "
        f"backbone pass and fine-tuning on a 2-core CPU ({settings.backbone} at {settings.input_size()} px, "
        f"{settings.stage2_epochs} fine-tuning epoch(s) with the whole backbone unfrozen); a GPU or the "
        "default preset is much faster"
    )
