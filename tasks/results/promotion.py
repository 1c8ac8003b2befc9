"""Crash-consistent promotion of a champion, and the recovery that every run starts with.

A promotion is crash-consistent: whatever instant the process dies at (kill -9, power loss), the next
`reconcile_champion` (every run calls it first; so do `promote_run` and ``--submit``) leaves either
the new champion AND its registry line, or the old champion AND the registry as it was. The steps
of one promotion (`Promotion`), all under ``.champion.lock``:

1. ``build``: fill ``.champion-<id>/`` (champion.json carries the ``promotion_id``), synced to disk;
2. ``write_intent``: ``.promotion-intent.json``, atomic and synced: the id, the run, the champion
   it replaces, the registry line to append and the run's decision file;
3. ``set_old_aside``: rename ``champion/`` to ``.champion-old-<id>/`` (when there is one);
4. ``move_new_in``: rename ``.champion-<id>/`` to ``champion/`` and sync the folder: the COMMIT POINT;
5. ``append_line``: append the registry line (synced), unless a line with this id is there already;
6. ``write_decision``: ``<run>/champion_decision.json``;
7. ``delete_old``, then 8. ``delete_intent`` (always last, whichever way recovery goes).

Recovery rule: committed means ``champion/champion.json`` carries the intent's ``promotion_id``.

============================================  ===============================================
crash point (what is on disk)                 recovery
============================================  ===============================================
during 1: ``.champion-<id>/``, no intent      roll back: delete the unfinished build
after 2: intent, build, old champion          roll back: delete the build, then the intent
after 3: intent, build, ``.champion-old-*``,  roll back: rename the old champion back, delete
no ``champion/``                              the build, then the intent
after 4 (committed): intent, new champion     roll forward: append the line, write the decision
                                              file, delete the old champion, then the intent
after 5, 6 or 7 (committed)                   roll forward: the same; the line is found by its
                                              id and not appended twice
============================================  ===============================================

Each recovery step checks the disk before it acts and the intent goes last, so a crash during
recovery is recovered by the next one (idempotent). Syncs order the disk writes for power loss:
the build and the intent reach the disk before the renames, the renames before the registry line.
A failure that is an exception rather than a crash is resolved at once by the same rule.

States this code never leaves, repaired when found (an older version's crash, a hand edit):
``.champion-old-*`` without ``champion/`` and without intent: the newest is restored; a champion
that the registry's last promotion does not name: a line marked ``reconciled`` is appended (its
action says "unexplained"); a registry whose last line was cut short is finished or trimmed.
Afterwards the registry's last ``promoted`` line names the run in ``champion/champion.json``, and
no ``.champion-*`` folder or intent remains.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.confine import check_confined
from tasks.io import atomic_write, atomic_write_json, exclusive_lock
from tasks.layout import OutputDir, RunFolder
from tasks.logs import get_logger
from tasks.results.registry import (
    append_registry,
    last_promoted,
    read_registry,
    reconciled_entry,
    repair_registry_tail,
)

STAGING_PREFIX = ".champion-"
OLD_PREFIX = ".champion-old-"


class ChampionError(RuntimeError):
    """The champion folder or a run folder cannot be read as expected; the message says which."""


def read_json(path: Path) -> Any:
    """Parse a JSON file, with the file named in the error."""
    check_confined(path)  # a planted link's target is never parsed into a message
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ChampionError(f"cannot read {path}: {exc}") from exc


def rename_path(source: Path, target: Path) -> None:
    """One atomic rename (same file system); a separate function so tests can make it fail."""
    os.rename(source, target)


def remove_tree(path: Path) -> bool:
    """Delete a folder and what is in it (nothing if it is gone already); True if it was there."""
    existed = path.exists()
    shutil.rmtree(path, ignore_errors=True)
    return existed


def sync_path(path: Path) -> None:
    """Flush a file, or a folder's entries (a rename in it), to the disk. POSIX; elsewhere a no-op."""
    if os.name != "posix":  # pragma: no cover - Windows cannot open a folder to sync it
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def sync_tree(root: Path) -> None:
    """Flush every file and folder under ``root`` (a finished build, before it is announced)."""
    for path in [*root.rglob("*"), root]:
        sync_path(path)


def write_synced_json(path: Path, data: Any) -> None:
    """`atomic_write` a JSON file whose contents and name are on the disk when this returns."""
    text = json.dumps(data, indent=2, sort_keys=False, default=str) + "\n"

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    atomic_write(path, write)
    sync_path(path.parent)


@dataclass(frozen=True)
class Promotion:
    """One promotion in progress: what its intent record says, and its steps (module docstring).

    `carry_out` runs `STEPS` in order; `resolve` finishes or undoes it from whatever state a crash
    left, by the rule in the module docstring. Every step checks the disk first, so each can be
    run again after a crash part-way through recovery.
    """

    output: OutputDir
    promotion_id: str
    run: str
    run_dir: Path
    champion_before: str | None
    entry: dict[str, Any]
    decision: dict[str, Any]

    STEPS = (
        "write_intent",
        "set_old_aside",
        "move_new_in",
        "append_line",
        "write_decision",
        "delete_old",
        "delete_intent",
    )

    @property
    def staging(self) -> Path:
        return self.output.root / f"{STAGING_PREFIX}{self.promotion_id}"

    @property
    def old(self) -> Path:
        return self.output.root / f"{OLD_PREFIX}{self.promotion_id}"

    @property
    def intent_path(self) -> Path:
        return self.output.promotion_intent

    def to_intent(self) -> dict[str, Any]:
        return {
            "promotion_id": self.promotion_id,
            "run": self.run,
            "run_dir": str(self.run_dir),
            "champion_before": self.champion_before,
            "staging": self.staging.name,
            "old": self.old.name,
            "registry_entry": self.entry,
            "decision": self.decision,
        }

    @classmethod
    def from_intent(cls, output: OutputDir) -> Promotion | None:
        """The promotion that ``.promotion-intent.json`` describes, or None when there is none."""
        path = output.promotion_intent
        if not path.is_file():
            return None
        data = read_json(path)
        try:
            return cls(
                output,
                str(data["promotion_id"]),
                str(data["run"]),
                Path(data["run_dir"]),
                data["champion_before"],
                dict(data["registry_entry"]),
                dict(data["decision"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ChampionError(
                f"{path} is not a promotion intent written by this pipeline (missing or bad {exc}); "
                f"check champion/ and registry.jsonl by hand, then delete it"
            ) from exc

    def build(self, fill: Callable[[Path], object]) -> None:
        """Step 1: ``fill(staging)`` writes the new champion (its champion.json must carry the
        ``promotion_id``), then it is synced to the disk; nothing is left if it fails."""
        try:
            fill(self.staging)
            sync_tree(self.staging)
        except BaseException:
            remove_tree(self.staging)
            raise

    def carry_out(self) -> None:
        """Steps 2-8. On an exception (not a crash) the promotion is resolved at once, then re-raised."""
        try:
            for name in self.STEPS:
                getattr(self, name)()
        except BaseException:
            try:
                actions = self.resolve()
            except Exception as exc:  # the next reconcile_champion retries from the intent
                get_logger().error("Champion recovery after a failed promotion failed too: %s", exc)
            else:
                for action in actions:
                    get_logger().warning("Champion recovery: %s", action)
            raise

    # --- the steps, each safe to repeat -------------------------------------------------------
    def write_intent(self) -> None:
        write_synced_json(self.intent_path, self.to_intent())

    def set_old_aside(self) -> None:
        target = self.output.champion.root
        if target.exists() and not self.old.exists():
            rename_path(target, self.old)

    def move_new_in(self) -> None:
        rename_path(self.staging, self.output.champion.root)
        sync_path(self.output.root)

    def append_line(self) -> bool:
        """Append the registry line unless a line with this promotion's id is there; True if appended."""
        if any(e.get("promotion_id") == self.promotion_id for e in read_registry(self.output.root)):
            return False
        append_registry(self.output.root, self.entry)
        return True

    def write_decision(self) -> None:
        if self.run_dir.is_dir():  # the run folder may have been deleted since
            atomic_write_json(RunFolder(self.run_dir).champion_decision, self.decision)

    def delete_old(self) -> bool:
        return remove_tree(self.old)

    def delete_intent(self) -> None:
        self.intent_path.unlink(missing_ok=True)
        sync_path(self.output.root)

    def restore_old(self) -> bool:
        """Roll-back step: put the set-aside champion back if ``champion/`` is empty; True if it did."""
        target = self.output.champion.root
        if target.exists() or not self.old.is_dir():
            return False
        rename_path(self.old, target)
        sync_path(self.output.root)
        return True

    def delete_staging(self) -> bool:
        return remove_tree(self.staging)

    # --- recovery ----------------------------------------------------------------------------
    def committed(self) -> bool:
        """Whether step 4 happened: ``champion/champion.json`` carries this promotion's id."""
        record_path = self.output.champion.champion_record
        if not record_path.is_file():
            return False
        record = read_json(record_path)
        return isinstance(record, dict) and record.get("promotion_id") == self.promotion_id

    def resolve(self) -> list[str]:
        """Finish the promotion if it was committed, else undo it; return what was done."""
        what = f"the interrupted promotion {self.promotion_id} of run {self.run}"
        if self.committed():
            actions = [f"completed {what} (it was already in champion/)"]
            if self.append_line():
                actions.append(f"appended its registry line (run {self.run}, replacing {self.champion_before})")
            self.write_decision()
            if self.delete_old():
                actions.append(f"deleted the previous champion {self.old.name}")
        else:
            actions = [f"rolled back {what}; champion/ stays run {self.champion_before}"]
            if self.restore_old():
                actions.append(f"restored the previous champion from {self.old.name}")
            if self.delete_staging():
                actions.append(f"deleted the unfinished build {self.staging.name}")
        self.delete_intent()
        return actions


def clear_leftovers(output: OutputDir) -> list[str]:
    """What no intent explains: an older version's crash between its renames, unfinished builds.

    No ``champion/`` but a ``.champion-old-*``: the newest is restored (the new one was never
    announced). Other old copies, unfinished ``.champion-<random>`` builds and temporary intent
    files are deleted.
    """
    root, target = output.root, output.champion.root
    actions: list[str] = []
    olds = sorted((p for p in root.glob(f"{OLD_PREFIX}*") if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not target.exists() and olds:
        newest = olds.pop()
        rename_path(newest, target)
        sync_path(root)
        actions.append(f"restored the previous champion from {newest.name}")
    for path in olds:
        remove_tree(path)
        actions.append(f"deleted stale {path.name}")
    for path in root.glob(f"{STAGING_PREFIX}*"):
        if path.is_dir() and not path.name.startswith(OLD_PREFIX):
            remove_tree(path)
            actions.append(f"deleted unfinished {path.name}")
    for path in root.glob(f".{output.promotion_intent.name}.*.tmp"):
        path.unlink(missing_ok=True)
        actions.append(f"deleted the unfinished intent file {path.name}")
    return actions


def match_registry(output: OutputDir) -> list[str]:
    """Make the registry's last promotion name the champion's run (only an older version or a hand
    edit can leave them apart): a line marked ``reconciled`` is appended, saying so."""
    record_path = output.champion.champion_record
    if not record_path.is_file():
        return []  # no champion, or a folder this pipeline did not write (read_champion says so)
    record = read_json(record_path)
    if not isinstance(record, dict) or not isinstance(record.get("run"), str):
        raise ChampionError(f"{record_path} names no run; it was not written by this pipeline")
    last = last_promoted(read_registry(output.root))
    before = None if last is None else last.get("run")
    if last is not None and before == record["run"]:
        return []
    reason = (
        f"recorded by reconciliation: champion/ serves run {record['run']} but the registry's last "
        f"promotion named {before or 'no run'}, and no promotion intent explained it (an interrupted "
        f"promotion by an older version, or a hand edit)"
    )
    append_registry(output.root, reconciled_entry(record, before, reason))
    return [
        f"appended a registry line for run {record['run']}, which champion/ serves but the registry's last "
        f"promotion named {before or 'no run'} (unexplained: no promotion intent; an interrupted promotion "
        f"by an older version, or a hand edit)"
    ]


def recover_champion(output_dir: Path) -> list[str]:
    """`reconcile_champion` without taking the lock (for a caller that holds it already)."""
    output = OutputDir(output_dir)
    if not output.root.is_dir():
        return []
    actions: list[str] = []
    repaired = repair_registry_tail(output.root)
    if repaired:
        actions.append(repaired)
    promotion = Promotion.from_intent(output)
    if promotion is not None:
        actions += promotion.resolve()
    actions += clear_leftovers(output)
    actions += match_registry(output)
    return actions


def reconcile_champion(output_dir: Path) -> list[str]:
    """Bring ``champion/`` and ``registry.jsonl`` back into agreement after any crash; return (and log)
    what was done, empty when nothing was needed.

    Finishes or undoes an interrupted promotion by the rule in the module docstring. Takes
    ``.champion.lock`` (so never call it while holding it: `recover_champion` is the lock-free form).
    Afterwards the registry's last ``promoted`` line names the run in ``champion/champion.json``,
    and no ``.champion-*`` folder or intent record remains.
    """
    if not OutputDir(output_dir).root.is_dir():
        return []
    with champion_lock(output_dir):
        actions = recover_champion(output_dir)
    for action in actions:
        get_logger().warning("Champion reconciliation: %s", action)
    return actions


@contextlib.contextmanager
def champion_lock(output_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<output-dir>/.champion.lock`` (two scheduled runs finishing together).

    POSIX ``flock``; where it does not exist (Windows) promotions are not serialised.
    """
    with exclusive_lock(OutputDir(output_dir).champion_lock):
        yield
