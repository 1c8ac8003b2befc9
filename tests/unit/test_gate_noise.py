"""The champion gate ignores noise: a paired bootstrap of challenger minus champion on the same
hold-out images must clear ``min_improvement`` with its lower bound."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from tasks.data.splitting import read_table
from tasks.layout import RunFolder
from tasks.results.champion import promote_run, read_champion
from tasks.results.evaluation import evaluate_predictions
from tasks.results.gate import PairedHoldout, decide_promotion
from tasks.results.registry import read_registry
from tasks.results.settings import GateSettings
from tests.helpers import BEST, write_fake_run

NAMES = [f"class{i}" for i in range(8)]


def record(run: str, truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    scores = evaluate_predictions(truth, pred, NAMES)
    return {
        "run": run,
        "model": "m",
        "target": "coarse",
        "class_names": NAMES,
        "split_fingerprint": "s1",
        "data_fingerprint": "d1",
        "metrics": {
            "macro_f1": scores["macro_f1"],
            "accuracy": scores["accuracy"],
            "per_class_f1": {row["name"]: row["f1"] for row in scores["per_class"]},
        },
    }


def holdout(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """An imbalanced hold-out and a champion right on about 80% of it."""
    rng = np.random.default_rng(seed)
    weights = np.linspace(1.0, 18.0, len(NAMES))
    truth = rng.choice(len(NAMES), n, p=weights / weights.sum())
    champion = np.where(rng.random(n) < 0.8, truth, rng.integers(0, len(NAMES), n))
    return truth, champion


def fixed(truth: np.ndarray, pred: np.ndarray, how_many: int) -> np.ndarray:
    """``pred`` with its first ``how_many`` mistakes (spread over the hold-out) corrected."""
    better = pred.copy()
    wrong = np.flatnonzero(pred != truth)
    chosen = wrong[np.linspace(0, len(wrong) - 1, how_many).astype(int)]
    better[chosen] = truth[chosen]
    return better


def flipped(truth: np.ndarray, pred: np.ndarray, fixes: int, breaks: int) -> np.ndarray:
    """``pred`` with ``fixes`` of its mistakes corrected and ``breaks`` of its right answers made wrong
    (spread over the hold-out): the kind of churn two trainings of one recipe show."""
    out = fixed(truth, pred, fixes)
    right = np.flatnonzero(out == truth)
    chosen = right[np.linspace(0, len(right) - 1, breaks).astype(int)]
    out[chosen] = (truth[chosen] + 1) % len(NAMES)
    return out


def decide(truth: np.ndarray, new: np.ndarray, old: np.ndarray, settings: GateSettings = GateSettings()) -> Any:
    paired = PairedHoldout(truth, new, old, len(NAMES), "test")
    return decide_promotion(record("new", truth, new), record("old", truth, old), settings, paired)


def quoted_interval(reason: str) -> tuple[float, float]:
    found = re.search(r"95% interval \[([-+]\d\.\d{4}), ([-+]\d\.\d{4})\]", reason)
    assert found, reason
    return float(found.group(1)), float(found.group(2))


def test_a_challenger_better_by_noise_only_is_kept() -> None:
    truth, champion = holdout()
    challenger = flipped(truth, champion, 8, 4)  # the same predictions but for 12 flips, 4 for the better
    decision = decide(truth, challenger, champion)
    assert not decision.promote
    assert "does not beat the champion's" in decision.reason and "beyond noise" in decision.reason
    low, high = quoted_interval(decision.reason)
    assert low <= 0 < high
    assert "paired bootstrap over 2000 resamples of the same 2000 hold-out images" in decision.reason
    # On the point difference alone (the old rule) it would have been promoted.
    assert decide_promotion(record("new", truth, challenger), record("old", truth, champion)).promote


def test_a_clearly_better_challenger_is_promoted_and_the_reason_quotes_the_interval() -> None:
    truth, champion = holdout()
    challenger = fixed(truth, champion, 150)
    decision = decide(truth, challenger, champion)
    assert decision.promote and "beats the champion's" in decision.reason
    low, high = quoted_interval(decision.reason)
    gain = (
        record("new", truth, challenger)["metrics"]["macro_f1"] - record("old", truth, champion)["metrics"]["macro_f1"]
    )
    assert 0 < low < gain < high and f"difference {gain:+.4f}" in decision.reason
    # min_improvement now applies to the lower bound: above it, the same challenger is kept.
    assert not decide(truth, challenger, champion, GateSettings(min_improvement=low + 0.001)).promote
    # The decision is reproducible (seeded bootstrap).
    assert decide(truth, challenger, champion) == decision


def test_the_confidence_setting_sets_the_interval_level() -> None:
    truth, champion = holdout()
    challenger = flipped(truth, champion, 40, 20)
    loose = decide(truth, challenger, champion, GateSettings(confidence=0.6))
    strict = decide(truth, challenger, champion, GateSettings(confidence=0.999))
    assert "60% interval" in loose.reason and "100% interval" in strict.reason
    assert loose.promote and not strict.promote


def test_without_paired_predictions_the_point_difference_decides_and_says_so() -> None:
    truth, champion = holdout()
    challenger = flipped(truth, champion, 8, 4)
    unpaired = decide_promotion(
        record("new", truth, challenger), record("old", truth, champion), GateSettings(), "no predictions here"
    )
    assert unpaired.promote and "point comparison only, no interval: no predictions here" in unpaired.reason
    # Predictions that do not reproduce the recorded scores are not trusted either.
    stale = PairedHoldout(truth, challenger, challenger, len(NAMES), "a stale file")
    decision = decide_promotion(record("new", truth, challenger), record("old", truth, champion), GateSettings(), stale)
    assert "point comparison only" in decision.reason and "a stale file" in decision.reason


def test_the_per_class_drop_rule_still_applies_after_a_significant_gain() -> None:
    truth, champion = holdout()
    challenger = fixed(truth, champion, 300)
    commonest = np.flatnonzero(truth == 7)
    challenger[commonest[: len(commonest) * 3 // 10]] = 6  # ...but 30% of class7 go to class6
    decision = decide(truth, challenger, champion)
    assert not decision.promote and "class7's F1 drops" in decision.reason


def make_run(root: Path, name: str, **options: Any) -> Path:
    return write_fake_run(root / "outputs" / "runs" / name, root / "data", images=False, **options)


def test_on_fake_runs_a_one_image_gain_is_kept_with_the_interval_on_record(tmp_path: Path) -> None:
    output = tmp_path / "outputs"
    promote_run(make_run(tmp_path, "run-1", best_errors=4), output)
    decision = promote_run(make_run(tmp_path, "run-2", best_errors=3), output)  # one image better of 32
    assert not decision.promote and "95% interval [" in decision.reason
    assert read_champion(output)["run"] == "run-1"
    assert read_registry(output)[-1]["reason"] == decision.reason


def test_the_champion_keeps_its_predictions_so_its_run_folder_may_go(tmp_path: Path) -> None:
    output = tmp_path / "outputs"
    run_1 = make_run(tmp_path, "run-1", best_errors=4)
    promote_run(run_1, output)
    RunFolder(run_1).predictions_of(BEST).unlink()  # its run folder was cleaned up
    decision = promote_run(make_run(tmp_path, "run-2", best_errors=3), output)
    assert "paired bootstrap" in decision.reason and "point comparison only" not in decision.reason


def test_on_fake_runs_a_champion_whose_predictions_are_gone_is_compared_on_points(tmp_path: Path) -> None:
    output = tmp_path / "outputs"
    run_1 = make_run(tmp_path, "run-1", best_errors=4)
    promote_run(run_1, output)
    RunFolder(run_1).predictions_of(BEST).unlink()  # its run folder was cleaned up, and a champion
    (output / "champion" / "predictions" / f"{BEST}.csv").unlink()  # promoted by an older version kept none
    decision = promote_run(make_run(tmp_path, "run-2", best_errors=3), output)
    assert decision.promote
    assert "point comparison only" in decision.reason and "predictions were not found" in decision.reason


def test_after_re_scoring_the_champion_the_interval_rests_on_the_shared_images(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another hold-out: the champion's model is re-run on the images it never trained on (faked
    here: it predicts the truth with 12 mistakes), and the paired bootstrap uses those predictions."""
    from tasks.results import rescore

    output = tmp_path / "outputs"
    promote_run(make_run(tmp_path, "run-1", best_errors=0), output)
    challenger_run = make_run(tmp_path, "run-2", best_errors=0, split_seed=1)

    def champion_predicts(folder: Path, model: str, paths: list[str], ok: np.ndarray) -> SimpleNamespace:
        table = read_table(RunFolder(challenger_run).table).set_index("path")
        truth = table.loc[paths, "coarse"].astype(int).to_numpy()
        return SimpleNamespace(classes=np.where(np.arange(len(truth)) < 12, (truth + 1) % 8, truth))

    monkeypatch.setattr(rescore, "MIN_SHARED_IMAGES", 5)
    monkeypatch.setattr(rescore, "has_recipes", lambda folder: True)
    monkeypatch.setattr(rescore, "predict_images", champion_predicts)
    decision = promote_run(challenger_run, output)
    images = int(re.search(r"scored on the (\d+) hold-out images", decision.reason).group(1))  # type: ignore[union-attr]
    assert f"of the same {images} hold-out images" in decision.reason and "95% interval [" in decision.reason


def test_a_forced_promotion_computes_no_interval_and_says_so(tmp_path: Path) -> None:
    output = tmp_path / "outputs"
    promote_run(make_run(tmp_path, "run-1", best_errors=3), output)
    forced = promote_run(make_run(tmp_path, "run-2", best_errors=4), output, settings=GateSettings(force_promote=True))
    assert forced.promote and forced.forced
    assert "not computed for a forced promotion" in forced.reason and "paired bootstrap" not in forced.reason
