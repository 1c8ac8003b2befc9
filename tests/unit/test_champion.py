"""The champion/challenger gate: better on the same hold-out or nothing, atomic, on the record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from tasks.kaggle import submit_champion
from tasks.layout import RunFolder
from tasks.results import promotion as promotion_module
from tasks.results.champion import fingerprint_run_data, model_files, promote_run, read_champion
from tasks.results.gate import Decision, decide_promotion
from tasks.results.promotion import ChampionError, Promotion, reconcile_champion, recover_champion
from tasks.results.registry import RegistryError, last_promoted, read_registry
from tasks.results.settings import GateSettings
from tasks.results.submission import SubmissionError
from tests.helpers import BEST, COARSE, HOLDOUT_PER_CLASS, write_fake_run


@pytest.fixture()
def workspace(tmp_path: Path) -> dict[str, Path]:
    return {"data": tmp_path / "data", "output": tmp_path / "outputs"}


def make_run(workspace: dict[str, Path], name: str, **options: Any) -> Path:
    """A run folder under the output directory, images shared with the other runs."""
    return write_fake_run(workspace["output"] / "runs" / name, workspace["data"], images=False, **options)


def truth() -> list[int]:
    return [label for label in range(len(COARSE)) for _ in range(HOLDOUT_PER_CLASS)]


def champion_contents(output: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in (output / "champion").rglob("*") if p.is_file()}


def leftovers(output: Path) -> list[str]:
    return sorted(p.name for p in output.iterdir() if p.name.startswith(".champion-"))


def test_first_run_is_promoted_with_its_files(workspace: dict[str, Path]) -> None:
    run = make_run(workspace, "run-1")
    decision = promote_run(run, workspace["output"], data_fingerprint="data-v1")
    assert decision.promote and decision.reason == "no champion yet"
    folder = workspace["output"] / "champion"
    assert sorted(p.name for p in folder.iterdir()) == [
        "champion.json",
        "metrics.json",
        "models",
        "predictions",
        "split.csv",
        "submission.csv",
    ]
    record = read_champion(workspace["output"])
    assert record["run"] == "run-1" and record["model"] == BEST and record["data_fingerprint"] == "data-v1"
    assert record["model_files"] == [f"models/{BEST}.keras"]
    assert set(record["metrics"]["per_class_f1"]) == set(COARSE)
    assert (folder / "submission.csv").read_text() == (run / "submission.csv").read_text()
    [line] = read_registry(workspace["output"])
    assert line["decision"] == "promoted" and line["champion_before"] is None and line["run"] == "run-1"
    assert {"time", "run", "target", "model", "macro_f1", "accuracy", "reason"} <= set(line)
    assert json.loads(RunFolder(run).champion_decision.read_text())["promote"] is True
    assert leftovers(workspace["output"]) == []


def test_worse_run_is_kept_and_the_registry_says_why(workspace: dict[str, Path]) -> None:
    promote_run(make_run(workspace, "run-1", best_errors=2), workspace["output"])
    before = (workspace["output"] / "champion" / "submission.csv").read_bytes()
    worse = make_run(workspace, "run-2", best_errors=8)
    decision = promote_run(worse, workspace["output"])
    assert not decision.promote and decision.champion_before == "run-1"
    assert "macro-F1" in decision.reason and "does not beat the champion's" in decision.reason
    assert read_champion(workspace["output"])["run"] == "run-1"
    assert (workspace["output"] / "champion" / "submission.csv").read_bytes() == before
    last = read_registry(workspace["output"])[-1]
    assert last["run"] == "run-2" and last["decision"] == "kept" and last["reason"] == decision.reason
    assert (worse / "metrics.json").is_file() and json.loads(RunFolder(worse).champion_decision.read_text())[
        "promote"
    ] is False


def test_better_run_replaces_the_champion(workspace: dict[str, Path]) -> None:
    # 8 mistakes -> 1 on 32 images: clearly better (4 -> 1 would not be, on so few images).
    promote_run(make_run(workspace, "run-1", best_errors=8), workspace["output"])
    decision = promote_run(make_run(workspace, "run-2", best_errors=1), workspace["output"])
    assert decision.promote and "beats the champion's" in decision.reason
    assert read_champion(workspace["output"])["run"] == "run-2"
    assert [line["decision"] for line in read_registry(workspace["output"])] == ["promoted", "promoted"]
    assert leftovers(workspace["output"]) == []


def test_a_class_that_gets_much_worse_blocks_promotion(workspace: dict[str, Path]) -> None:
    # Champion: twelve mistakes spread over all classes (macro-F1 ~0.62, Pinopsida 0.75).
    promote_run(make_run(workspace, "run-1", best_errors=12), workspace["output"])
    # Challenger: only two mistakes (macro-F1 ~0.93, clearly better), both on Pinopsida, whose F1
    # falls 0.75 -> 0.67.
    pred = truth()
    pred[-1] = pred[-2] = 6
    decision = promote_run(make_run(workspace, "run-2", best_predictions=pred), workspace["output"])
    assert not decision.promote
    assert "Pinopsida" in decision.reason and "more than the allowed 0.0500" in decision.reason
    assert read_champion(workspace["output"])["run"] == "run-1"
    # A looser bound lets the same run through.
    looser = promote_run(
        make_run(workspace, "run-3", best_predictions=pred),
        workspace["output"],
        settings=GateSettings(max_class_f1_drop=0.5),
    )
    assert looser.promote


def test_a_different_hold_out_is_not_compared(workspace: dict[str, Path]) -> None:
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    decision = promote_run(make_run(workspace, "run-2", best_errors=0, split_seed=1), workspace["output"])
    assert not decision.promote and "hold-outs differ" in decision.reason and "--force-promote" in decision.reason
    forced = promote_run(
        make_run(workspace, "run-3", best_errors=0, split_seed=1),
        workspace["output"],
        settings=GateSettings(force_promote=True),
    )
    assert forced.promote and forced.forced and "hold-outs differ" in forced.reason
    assert read_champion(workspace["output"])["run"] == "run-3"
    assert read_registry(workspace["output"])[-1]["forced"] is True


def test_crash_between_the_renames_keeps_the_old_champion(workspace: dict[str, Path], monkeypatch) -> None:
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    champion_files = champion_contents(workspace["output"])
    better = make_run(workspace, "run-2", best_errors=0)
    real_rename = promotion_module.rename_path
    calls: list[tuple[Path, Path]] = []

    def crash_on_second_rename(source: Path, target: Path) -> None:
        calls.append((source, target))
        if len(calls) == 2:  # champion -> .champion-old-* done; the new one never arrives
            raise OSError("simulated crash")
        real_rename(source, target)

    monkeypatch.setattr(promotion_module, "rename_path", crash_on_second_rename)
    with pytest.raises(OSError, match="simulated crash"):
        promote_run(better, workspace["output"])
    assert champion_contents(workspace["output"]) == champion_files
    assert leftovers(workspace["output"]) == []
    assert [line["run"] for line in read_registry(workspace["output"])] == ["run-1"]  # nothing announced

    monkeypatch.setattr(promotion_module, "rename_path", real_rename)
    assert promote_run(better, workspace["output"]).promote
    assert read_champion(workspace["output"])["run"] == "run-2"


def test_hard_crash_leftovers_are_recovered_on_the_next_call(workspace: dict[str, Path]) -> None:
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    output = workspace["output"]
    # What a kill -9 between the two renames leaves: the old champion set aside, a finished build.
    (output / "champion").rename(output / ".champion-old-1234abcd")
    (output / ".champion-5678ef00").mkdir()
    (output / ".champion-5678ef00" / "champion.json").write_text("{}")
    assert recover_champion(output)[0].startswith("restored the previous champion")
    assert read_champion(output)["run"] == "run-1" and leftovers(output) == []
    # And through promote_run itself, which recovers before deciding.
    (output / "champion").rename(output / ".champion-old-1234abcd")
    decision = promote_run(make_run(workspace, "run-2", best_errors=6), output)
    assert not decision.promote and decision.champion_before == "run-1"
    assert read_champion(output)["run"] == "run-1" and leftovers(output) == []


def test_failure_while_building_leaves_no_trace(workspace: dict[str, Path], monkeypatch) -> None:
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    better = make_run(workspace, "run-2", best_errors=0)

    def disk_full(*args: Any, **kwargs: Any) -> None:
        raise OSError("No space left on device")

    monkeypatch.setattr(shutil, "copy2", disk_full)  # the build copies files with it
    with pytest.raises(OSError, match="No space"):
        promote_run(better, workspace["output"])
    assert read_champion(workspace["output"])["run"] == "run-1" and leftovers(workspace["output"]) == []


def test_a_broken_submission_is_refused_and_the_published_one_kept(workspace: dict[str, Path]) -> None:
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    published = (workspace["output"] / "champion" / "submission.csv").read_bytes()
    better = make_run(workspace, "run-2", best_errors=0)
    lines = (better / "submission.csv").read_text().splitlines()
    (better / "submission.csv").write_text("\n".join(lines + [lines[1]]) + "\n")  # one row twice
    with pytest.raises(SubmissionError, match="duplicated"):
        promote_run(better, workspace["output"])
    assert (workspace["output"] / "champion" / "submission.csv").read_bytes() == published
    last = read_registry(workspace["output"])[-1]
    assert last["decision"] == "kept" and "submission refused" in last["reason"]
    assert leftovers(workspace["output"]) == []


def record(macro: float, per_class: dict[str, float], **changes: Any) -> dict[str, Any]:
    base = {
        "run": "r",
        "model": "m",
        "target": "coarse",
        "class_names": list(per_class),
        "split_fingerprint": "s1",
        "data_fingerprint": "d1",
        "metrics": {"macro_f1": macro, "accuracy": macro, "per_class_f1": per_class},
    }
    return {**base, **changes}


def test_gate_rules_on_plain_records() -> None:
    champion = record(0.80, {"a": 0.8, "b": 0.8}, run="champ")
    assert decide_promotion(record(0.9, {"a": 0.9, "b": 0.9}), None) == Decision(True, "no champion yet", run="r")
    assert not decide_promotion(record(0.80, {"a": 0.8, "b": 0.8}), champion).promote  # a tie keeps the champion
    assert decide_promotion(record(0.82, {"a": 0.84, "b": 0.8}), champion).promote
    margin = GateSettings(min_improvement=0.05)
    assert not decide_promotion(record(0.82, {"a": 0.84, "b": 0.8}), champion, margin).promote
    other_target = decide_promotion(record(0.95, {"a": 0.95, "b": 0.95}, target="fine"), champion)
    assert not other_target.promote and "coarse" in other_target.reason and "fine" in other_target.reason
    other_data = decide_promotion(record(0.95, {"a": 0.95, "b": 0.95}, data_fingerprint="d2"), champion)
    assert not other_data.promote and "data differ" in other_data.reason
    with pytest.raises(ValueError):
        GateSettings(max_class_f1_drop=-0.1)


def test_model_files_follow_the_naming_of_each_model_kind(tmp_path: Path) -> None:
    models = tmp_path / "models"
    models.mkdir()
    for name in ("pixels_svm.joblib", "efficientnet_lite0_finetuned.keras", "efficientnet_lite0_logreg.joblib"):
        (models / name).write_bytes(b"x")
    assert [p.name for p in model_files(tmp_path, "pixels_svm")] == ["pixels_svm.joblib"]
    finetuned = model_files(tmp_path, "efficientnet_lite0_finetuned")
    assert [p.name for p in finetuned] == ["efficientnet_lite0_finetuned.keras"]
    assert model_files(tmp_path, "efficientnet_lite0_head") == []  # the stage-1 head has no file of its own


def test_data_fingerprint_reads_the_validated_samples_and_class_names(workspace: dict[str, Path]) -> None:
    """Without a fingerprint from validation, the gate hashes validation/samples.csv and classes.json
    (it once looked for them in the run root, fell back to table.csv and ignored the class names)."""
    run = RunFolder(make_run(workspace, "run-1"))
    before = fingerprint_run_data(run.root)
    run.classes.write_text(json.dumps({"coarse": list(reversed(COARSE)), "fine": COARSE}))
    relabelled = fingerprint_run_data(run.root)
    assert relabelled != before
    run.table.unlink()  # the samples alone are enough
    assert fingerprint_run_data(run.root) == relabelled


# --- crash consistency: every crash point, and crashes during recovery ----------------------------


class Crash(BaseException):
    """A simulated kill -9: nothing after it runs, not even the in-process recovery."""


def crash(name: str):
    def crashed(*args: Any, **kwargs: Any) -> None:
        raise Crash(name)

    return crashed


#: Crash before this step (``build``: after the build, before the intent) -> the run champion/ must serve after recovery.
CRASH_POINTS = {
    "build": "run-1",
    "write_intent": "run-1",
    "set_old_aside": "run-1",
    "move_new_in": "run-1",
    "append_line": "run-2",
    "write_decision": "run-2",
    "delete_old": "run-2",
    "delete_intent": "run-2",
}
RECOVERY_STEPS = ("restore_old", "delete_staging", "append_line", "write_decision", "delete_old", "delete_intent")


@pytest.fixture(scope="module")
def promoted_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output directory whose champion is run-1, with a better run-2 beside it (copied per scenario)."""
    root = tmp_path_factory.mktemp("promoted-once")
    workspace = {"data": root / "data", "output": root / "outputs"}
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    make_run(workspace, "run-2", best_errors=0)
    return root


def scenario(promoted_once: Path, tmp_path: Path, name: str) -> Path:
    """A private copy of the prepared output directory; returns its path."""
    return Path(shutil.copytree(promoted_once / "outputs", tmp_path / name / "outputs"))


def crash_promotion(monkeypatch: pytest.MonkeyPatch, output: Path, point: str) -> None:
    """Promote run-2 and 'kill' the process just before ``point``."""
    with monkeypatch.context() as patch:
        patch.setattr(Promotion, "resolve", lambda self: [])  # a dead process recovers nothing
        if point == "build":
            patch.setattr(promotion_module, "sync_tree", crash(point))
            patch.setattr(promotion_module, "remove_tree", lambda path: None)
        else:
            patch.setattr(Promotion, point, crash(point))
        with pytest.raises(Crash):
            promote_run(output / "runs" / "run-2", output)


def assert_reconciled(output: Path, expected: str, registry_before: list[str]) -> None:
    """The invariant, and which way the promotion went."""
    record = read_champion(output)
    assert record is not None and record["run"] == expected
    assert (output / "champion" / "submission.csv").read_text() == (
        output / "runs" / expected / "submission.csv"
    ).read_text()
    lines = (output / "registry.jsonl").read_text().splitlines()
    assert lines[: len(registry_before)] == registry_before  # appended to, never rewritten
    entries = read_registry(output)
    assert last_promoted(entries)["run"] == expected
    if expected == "run-2":  # rolled forward: exactly one line for this promotion, and the run's decision file
        assert [e["promotion_id"] for e in entries[len(registry_before) :]] == [record["promotion_id"]]
        assert json.loads(RunFolder(output / "runs" / "run-2").champion_decision.read_text())["promote"] is True
    else:  # rolled back: the registry as it was
        assert len(lines) == len(registry_before)
    assert leftovers(output) == [] and not (output / ".promotion-intent.json").exists()


@pytest.mark.parametrize("point", list(CRASH_POINTS))
def test_a_crash_at_each_point_is_rolled_back_or_forward_by_its_rule(
    point: str, promoted_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    output = scenario(promoted_once, tmp_path, "direct")
    before = (output / "registry.jsonl").read_text().splitlines()
    crash_promotion(monkeypatch, output, point)
    committed = CRASH_POINTS[point] == "run-2"
    assert (read_champion(output) or {}).get("run") == (
        "run-2" if committed else None if point == "move_new_in" else "run-1"
    )
    actions = recover_champion(output)
    assert actions and not any("unexplained" in a for a in actions)
    if point not in ("build", "write_intent"):  # no intent yet: only the unfinished build to delete
        assert actions[0].startswith("completed" if committed else "rolled back"), actions
    assert_reconciled(output, CRASH_POINTS[point], before)
    assert recover_champion(output) == []  # nothing left to do

    # Then each recovery step in turn crashes part-way; the next recovery finishes the job the same way.
    crashed = []
    for step in RECOVERY_STEPS:
        output = scenario(promoted_once, tmp_path, f"recovery-{step}")
        crash_promotion(monkeypatch, output, point)
        with monkeypatch.context() as patch:
            patch.setattr(Promotion, step, crash(step))
            try:
                recover_champion(output)
            except Crash:
                crashed.append(step)
        recover_champion(output)
        assert_reconciled(output, CRASH_POINTS[point], before)
    # With an intent, recovery runs Promotion steps, and each crash interrupted it; without one
    # (a crash before the intent was written), recovery only deletes the unfinished build.
    assert bool(crashed) == (point not in ("build", "write_intent")), crashed


def test_an_error_after_the_commit_point_completes_the_promotion(workspace: dict[str, Path], monkeypatch) -> None:
    """An exception (not a crash) is resolved at once by the same rule: past the rename it rolls forward."""
    promote_run(make_run(workspace, "run-1", best_errors=4), workspace["output"])
    real_unlink = Path.unlink

    def unlink_fails_once(self: Path, missing_ok: bool = False) -> None:
        if self.name == ".promotion-intent.json" and not calls:
            calls.append(self)
            raise OSError("simulated I/O error")
        real_unlink(self, missing_ok=missing_ok)

    calls: list[Path] = []
    monkeypatch.setattr(Path, "unlink", unlink_fails_once)
    with pytest.raises(OSError, match="simulated I/O error"):
        promote_run(make_run(workspace, "run-2", best_errors=0), workspace["output"])
    assert read_champion(workspace["output"])["run"] == "run-2"
    assert [e["run"] for e in read_registry(workspace["output"])] == ["run-1", "run-2"]
    assert not (workspace["output"] / ".promotion-intent.json").exists()


def test_a_champion_the_registry_does_not_name_gets_a_reconciled_line(workspace: dict[str, Path]) -> None:
    """What the previous version left when killed between its swap and its registry append."""
    output = workspace["output"]
    promote_run(make_run(workspace, "run-1", best_errors=4), output)
    promote_run(make_run(workspace, "run-2", best_errors=0), output)
    registry = output / "registry.jsonl"
    registry.write_text(registry.read_text().splitlines()[0] + "\n")  # the run-2 line never written
    (output / "..promotion-intent.json.k3j4.tmp").write_text("{")  # an intent write killed half-way
    deleted, action = reconcile_champion(output)
    assert deleted == "deleted the unfinished intent file ..promotion-intent.json.k3j4.tmp"
    assert "unexplained" in action and "run-2" in action
    last = read_registry(output)[-1]
    assert last["run"] == "run-2" and last["decision"] == "promoted" and last["reconciled"] is True
    assert last["champion_before"] == "run-1" and "run-1" in last["reason"]
    assert reconcile_champion(output) == []


def test_a_registry_line_cut_short_is_trimmed_and_the_promotion_re_recorded(
    workspace: dict[str, Path], monkeypatch
) -> None:
    output = workspace["output"]
    promote_run(make_run(workspace, "run-1", best_errors=4), output)
    run_2 = make_run(workspace, "run-2", best_errors=0)
    with monkeypatch.context() as patch:  # killed after the append...
        patch.setattr(Promotion, "resolve", lambda self: [])
        patch.setattr(Promotion, "write_decision", crash("write_decision"))
        with pytest.raises(Crash):
            promote_run(run_2, output)
    registry = output / "registry.jsonl"
    registry.write_bytes(registry.read_bytes()[:-40])  # ...and the power went before the line was on disk
    with pytest.raises(RegistryError, match=r"registry.jsonl line 2 is not JSON"):
        read_registry(output)
    actions = reconcile_champion(output)
    assert actions[0].startswith("removed an unfinished last line of registry.jsonl")
    assert any("appended its registry line" in a for a in actions)
    assert [e["run"] for e in read_registry(output)] == ["run-1", "run-2"]
    # A last line complete but for its newline only gets the newline.
    registry.write_bytes(registry.read_bytes()[:-1])
    assert reconcile_champion(output) == ["added the missing newline after the last line of registry.jsonl"]
    assert [e["run"] for e in read_registry(output)] == ["run-1", "run-2"]


def test_an_intent_that_is_not_ours_is_named(workspace: dict[str, Path]) -> None:
    workspace["output"].mkdir(parents=True)
    (workspace["output"] / ".promotion-intent.json").write_text('{"run": "x"}')
    with pytest.raises(ChampionError, match=r"\.promotion-intent\.json is not a promotion intent"):
        reconcile_champion(workspace["output"])


class FakeKaggle:
    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str]] = []

    def competition_submit(self, path: str, message: str, competition: str) -> str:
        self.calls.append((path, Path(path).read_text(), message))
        return "ok"


@pytest.mark.parametrize(("point", "expected"), [("move_new_in", "run-1"), ("append_line", "run-2")])
def test_submit_sends_the_reconciled_champion(
    point: str, expected: str, promoted_once: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed with the old champion set aside (no champion/ at all) or with the new one not yet on
    the record: --submit first reconciles, then sends the champion the registry names."""
    output = scenario(promoted_once, tmp_path, "submit")
    crash_promotion(monkeypatch, output, point)
    client = FakeKaggle()
    submit_champion(output, client=client)
    [(path, text, message)] = client.calls
    assert text == (output / "runs" / expected / "submission.csv").read_text()
    assert f"champion from run {expected}:" in message
    assert last_promoted(read_registry(output))["run"] == expected
