"""What the transfer settings cost at a size: feature memory, the refusal, the preset's warning."""

from __future__ import annotations

import pytest

from tasks.models.settings import TransferSettings
from tasks.models.sizing import FeaturesTooLarge, check_feature_memory, feature_gib, feature_values, preset_warning

FULL_SIZE, FULL_TRAIN = 200_000, 120_000


def test_the_flatten_head_keeps_the_whole_feature_map() -> None:
    assert feature_values(TransferSettings()) == 1280  # pooled
    assert feature_values(TransferSettings(head="flatten-dense")) == 7 * 7 * 1280  # 224 px / 32 = 7
    assert feature_values(TransferSettings(head="flatten-dense", image_size=240)) == 8 * 8 * 1280  # ceil(7.5)
    # Views add rows for the train images only.
    one_view = feature_gib(TransferSettings(views=1), FULL_SIZE, FULL_TRAIN)
    assert one_view == pytest.approx((FULL_SIZE + FULL_TRAIN) * 1280 * 4 / 2**30)


def test_full_size_flatten_features_are_refused_with_what_to_do() -> None:
    check_feature_memory(TransferSettings(), FULL_SIZE, FULL_TRAIN)  # pooled: under 1 GiB, fine
    with pytest.raises(FeaturesTooLarge) as refused:
        check_feature_memory(TransferSettings(preset="original").resolved(), FULL_SIZE, FULL_TRAIN)
    message = str(refused.value)
    assert "200,000 images would take 46.7 GiB" in message
    assert "--transfer.head gap (pooled features, 0.954 GiB)" in message
    assert "--transfer.max-feature-gib" in message
    # A machine with the memory may raise the limit.
    roomy = TransferSettings(preset="original", max_feature_gib=64).resolved()
    check_feature_memory(roomy, FULL_SIZE, FULL_TRAIN)


def test_only_the_original_preset_is_warned_with_its_size_and_time() -> None:
    assert preset_warning(TransferSettings(), FULL_SIZE, FULL_TRAIN) is None
    warning = preset_warning(TransferSettings(preset="original").resolved(), FULL_SIZE, FULL_TRAIN)
    assert warning is not None
    assert "23.4 GiB on disk and 46.7 GiB in memory" in warning
    hours = float(warning.split("roughly ")[1].split(" h")[0])
    assert hours > 5  # EfficientNetV2S over 200,000 images plus two unfrozen epochs on a CPU
