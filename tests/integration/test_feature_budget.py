"""Features over the memory budget stop the run before the backbone pass, with what to change."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.full import full_pipeline
from flows.params import PipelineParams
from tasks.data.settings import DataSettings
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.models.sizing import FeaturesTooLarge


@pytest.mark.slow
def test_flatten_features_over_the_budget_are_refused_before_the_backbone_pass(
    prefect_server: None, tiny_sample: Path, tmp_path: Path
) -> None:
    params = PipelineParams(
        data=DataSettings(data_dir=tiny_sample, output_dir=tmp_path / "out"),
        baselines=BaselineSettings(pixel_models=[], embedding_models=["logreg"]),
        # 400 images x 2 x 2 x 1280 float32 values = 0.008 GiB, over a 0.005 GiB budget.
        transfer=TransferSettings(head="flatten-dense", image_size=64, max_feature_gib=0.005),
    )
    with pytest.raises(FeaturesTooLarge, match=r"400 images would take 0\.00763 GiB .*--transfer\.head gap"):
        full_pipeline(params)
    assert not (tmp_path / "out" / "cache" / "embeddings").exists()  # no backbone pass started
    assert not (tmp_path / "out" / "champion").exists()
