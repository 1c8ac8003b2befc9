"""End to end: damage every kind of cache file under the output directory, rerun the full flow,
get the same model scores (the readers heal what Prefect's cache hands them, see tasks.cache_files)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from flows.full import full_pipeline
from flows.params import PipelineParams
from tasks.data.settings import DataSettings, SplitSettings
from tasks.models.settings import BaselineSettings, TransferSettings
from tasks.results.settings import GateSettings
from tests.helpers import damage_file


def cache_files(cache: Path, backbones: Path) -> dict[str, Path]:
    """One file of each kind of self-healing cache, by kind (the stage-2 state file is damaged
    in the unit tests: damaging it here would delete the checkpoint before its weights are read)."""
    found = {
        "pixel features": list(cache.glob("pixels-*.npy")),
        "backbone features": list(cache.glob("embeddings/*.npz")),
        "image scan": list(cache.rglob("image-scan-*.sqlite")),
        "stage-2 weights": list(cache.glob("checkpoints/*/models/best.weights.h5")),
        "decoded images": sorted(p for p in cache.glob("images/*") if ".data-" in p.name),
        "converted Lite0 weights": list(backbones.glob("efficientnet_lite0-*.weights.h5")),
    }
    assert all(len(files) >= 1 for files in found.values()), found
    return {kind: files[0] for kind, files in found.items()}


def named_file(kind: str, path: Path) -> Path:
    """The file a damage warning names: a decoded-image cache is named by its index."""
    return path.with_name(path.name.split(".data-")[0] + ".index") if kind == "decoded images" else path


def scores(summary: dict) -> dict[str, tuple[float, float]]:
    metrics = json.loads(Path(summary.evaluation.metrics_path).read_text())
    return {name: (m["accuracy"], m["macro_f1"]) for name, m in metrics["models"].items()}


@pytest.mark.slow
@pytest.mark.serial  # stage 2 is trained twice and must score the same: no other test alongside
def test_rerun_after_damaging_every_cache_file_gives_the_same_scores(
    prefect_server: None,
    tiny_sample: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    backbones = tmp_path / "backbones"
    monkeypatch.setenv("LIVING_THINGS_CACHE", str(backbones))  # a private converted-weights cache
    params = PipelineParams(
        gate=GateSettings(
            export_check_rows=0
        ),  # the caches are the subject; tests/integration/test_predict checks the gate
        data=DataSettings(data_dir=tiny_sample, output_dir=tmp_path / "out"),
        split=SplitSettings(seed=3),
        baselines=BaselineSettings(pixel_models=["random_forest"], rf_n_estimators=20, embedding_models=["logreg"]),
        transfer=TransferSettings(
            image_size=32, stage1_epochs=3, stage2_epochs=2, unfreeze_blocks=1, image_cache=True
        ),  # ImageNet weights: the converted Lite0 cache is used
    )
    cold = full_pipeline(params)
    files = cache_files(tmp_path / "out" / "cache", backbones)
    cold_bytes = {kind: path.read_bytes() for kind, path in files.items()}
    for path in files.values():
        damage_file(path, "garbled" if path.suffix == ".sqlite" else "garbled-middle")

    with caplog.at_level(logging.WARNING):  # Prefect's run loggers propagate to it in tests
        warm = full_pipeline(params)
    assert scores(warm) == scores(cold)
    assert set(scores(cold)) - {"efficientnet_lite0_finetuned"} == {  # stage 2 only if it beat stage 1
        "pixels_random_forest",
        "efficientnet_lite0_logreg",
        "efficientnet_lite0_head",
    }
    # Validation was reused (same data), so nothing read the scan cache: the next scan rebuilds
    # it (tests/unit/test_cache_healing.py). Every other damaged file was read, named once, healed.
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for kind, path in files.items():
        named = [m for m in messages if f"Damaged cache file {named_file(kind, path)} " in m]
        assert len(named) == (0 if kind == "image scan" else 1), (kind, messages)
    for kind in ("pixel features", "backbone features", "converted Lite0 weights", "decoded images"):
        assert files[kind].read_bytes() == cold_bytes[kind], f"{kind} not recomputed as on the cold run"
    from tasks.cache_files import check_weights_seal

    check_weights_seal(files["stage-2 weights"])  # trained again and sealed
