"""The champion gate's rules: whether a challenger's hold-out scores replace the champion's.

Rules (`decide_promotion`), in order:

1. no champion yet: promote;
2. a different target (coarse vs fine): refuse, the scores are not comparable;
3. a different hold-out (split fingerprint) or different data (data fingerprint, class names):
   refuse. The champion's scores were measured on other images; comparing them with the
   challenger's would be dishonest, and re-scoring the champion would mean re-running its model
   on the new hold-out. The reason tells the user what to do: rerun with the same seed, hold-out
   fraction/mode and data (the champion's split.csv is kept for reference), or pass
   ``--force-promote`` to replace the champion anyway;
4. the challenger's hold-out macro-F1 must beat the champion's by more than ``min_improvement``
   beyond noise: both models' predictions of the same hold-out images are resampled together
   (a paired, stratified bootstrap, `tasks.results.bootstrap.paired_difference`) and the lower
   bound of the ``confidence`` interval of the macro-F1 difference must be above
   ``min_improvement``. On the rare classes one image moves macro-F1 by hundredths, so a
   positive difference alone is often luck. When the paired predictions are not available (a
   champion whose run folder is gone, predictions that do not reproduce the recorded scores), the
   point difference decides, and the reason says so. A tie keeps the champion: replacing a model
   costs trust, so it needs a reason;
5. no class's F1 may drop by more than ``max_class_f1_drop`` (the worst class is named).

Plain functions on the two records (`tasks.results.champion.describe_run` builds them); promotion
itself, crash-consistent, is `tasks.results.champion` and `tasks.results.promotion`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tasks.results.bootstrap import PairedDifference, paired_difference
from tasks.results.settings import GateSettings

#: Float noise allowance when comparing scores (F1 values are ratios of small integers).
TOLERANCE = 1e-9


@dataclass(frozen=True)
class Decision:
    """The gate's verdict and its reason, phrased for the person reading the run's report."""

    promote: bool
    reason: str
    run: str | None = None
    champion_before: str | None = None
    forced: bool = False
    champion_dir: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedHoldout:
    """Both models' predictions of the same hold-out images, aligned with their true labels, and
    where the champion's came from (for the reason)."""

    truth: np.ndarray
    challenger: np.ndarray
    champion: np.ndarray
    n_classes: int
    source: str


def worst_class_drop(challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> tuple[str, float, float, float]:
    """(class, drop, champion F1, challenger F1) of the class whose F1 fell the most."""
    before = champion["metrics"]["per_class_f1"]
    after = challenger["metrics"]["per_class_f1"]
    drops = [(name, before[name] - after.get(name, 0.0), before[name], after.get(name, 0.0)) for name in before]
    return max(drops, key=lambda d: d[1]) if drops else ("", 0.0, 0.0, 0.0)


def comparability_problem(challenger: Mapping[str, Any], champion: Mapping[str, Any]) -> str | None:
    """Why the two sets of scores cannot be compared, or None if they can."""
    if challenger["target"] != champion["target"]:
        return (
            f"the champion predicts {champion['target']} classes and this run predicts {challenger['target']}; "
            f"the scores are not comparable. Use a separate --output-dir per target"
        )
    advice = (
        f"Rerun with the same data, seed and hold-out settings as the champion's run {champion['run']} "
        f"(its split.csv is in the champion folder), or pass --force-promote to replace it anyway"
    )
    if challenger["split_fingerprint"] != champion["split_fingerprint"]:
        return (
            f"the hold-outs differ (champion scored on split {champion['split_fingerprint']}, this run on "
            f"{challenger['split_fingerprint']}), so their macro-F1s are not comparable. {advice}"
        )
    if list(challenger["class_names"]) != list(champion["class_names"]):
        return f"the class names differ from the champion's, so its scores are not comparable. {advice}"
    mine, theirs = challenger.get("data_fingerprint"), champion.get("data_fingerprint")
    if mine and theirs and mine != theirs:
        return (
            f"the data differ (champion data fingerprint {theirs}, this run {mine}), so the same hold-out "
            f"images may carry other labels. {advice}"
        )
    return None


def paired_evidence(paired: PairedHoldout | str | None, gain: float, settings: GateSettings) -> PairedDifference | str:
    """The paired bootstrap of the macro-F1 difference, or why there is none (``paired`` may already
    say why). Predictions that do not reproduce the records' difference are not used."""
    if paired is None:
        return "the two models' predictions of the same hold-out images were not given"
    if isinstance(paired, str):
        return paired
    evidence = paired_difference(
        paired.truth, paired.challenger, paired.champion, paired.n_classes, level=settings.confidence
    )
    if abs(evidence.difference - gain) > 1e-6:
        return (
            f"the predictions read ({paired.source}) give a difference of {evidence.difference:+.4f}, not the "
            f"recorded {gain:+.4f}"
        )
    return evidence


def decide_promotion(
    challenger: Mapping[str, Any],
    champion: Mapping[str, Any] | None,
    settings: GateSettings = GateSettings(),
    paired: PairedHoldout | str | None = None,
) -> Decision:
    """Whether the challenger replaces the champion, and why (rules in the module docstring).

    ``paired``: both models' predictions of the same hold-out images (the noise-aware rule 4), or
    why they are not available (the point difference decides, and the reason says why)."""
    run = challenger.get("run")
    if champion is None:
        return Decision(True, "no champion yet", run=run)
    before = champion.get("run")
    problem = comparability_problem(challenger, champion)
    if problem:
        return Decision(False, f"not compared: {problem}.", run=run, champion_before=before)
    new, old = challenger["metrics"]["macro_f1"], champion["metrics"]["macro_f1"]
    gain = new - old
    evidence = paired_evidence(paired, gain, settings)
    if isinstance(evidence, PairedDifference):
        low, high = evidence.interval.low, evidence.interval.high
        margin = low
        measured = (
            f"difference {gain:+.4f}, {evidence.interval.level:.0%} interval [{low:+.4f}, {high:+.4f}] "
            f"by a paired bootstrap over {evidence.resamples} resamples of the same {evidence.images} hold-out images"
        )
        bound, noise = f"the interval's lower bound {low:+.4f}", " beyond noise"
    else:
        margin = gain
        measured = f"difference {gain:+.4f}; point comparison only, no interval: {evidence}"
        bound, noise = f"the difference {gain:+.4f}", ""
    if margin <= settings.min_improvement + TOLERANCE:
        return Decision(
            False,
            f"hold-out macro-F1 {new:.4f} ({challenger['model']}) does not beat the champion's {old:.4f} "
            f"({champion['model']}, run {before}) by more than {settings.min_improvement:.4f}{noise}: "
            f"{bound} is not above it ({measured}).",
            run=run,
            champion_before=before,
        )
    name, drop, was, now = worst_class_drop(challenger, champion)
    if drop > settings.max_class_f1_drop + TOLERANCE:
        return Decision(
            False,
            f"hold-out macro-F1 improves {old:.4f} -> {new:.4f}, but class {name}'s F1 drops by {drop:.4f} "
            f"({was:.4f} -> {now:.4f}), more than the allowed {settings.max_class_f1_drop:.4f}.",
            run=run,
            champion_before=before,
        )
    worst = f"worst class change: {name} {-drop:+.4f}" if name else "no per-class scores"
    return Decision(
        True,
        f"hold-out macro-F1 {new:.4f} beats the champion's {old:.4f} (run {before}): {bound} is above "
        f"{settings.min_improvement:.4f} ({measured}), and no class F1 drops by more than "
        f"{settings.max_class_f1_drop:.4f} ({worst}).",
        run=run,
        champion_before=before,
    )
