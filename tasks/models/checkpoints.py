"""Stage-2 checkpoints: the weights after every epoch, then a state file naming the completed
epoch, so a rerun after a crash continues from the last completed epoch (`tasks.models.transfer`).

Reading a checkpoint back checks it (`read_state`): the state file must be JSON with every key,
of the right type, with consistent counters and one history row per completed epoch, and both
weights files must match the digest sealed into them when they were written
(`tasks.cache_files.seal_weights`). A damaged checkpoint is deleted with one warning and stage 2
starts from the beginning, with the model exactly as a cold run has it (`resume_state`).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np

from tasks.cache_files import DamagedCache, check_weights_seal, describe, discard, expect_keys, seal_weights
from tasks.data.settings import SplitSettings
from tasks.io import atomic_write_json, fingerprint_text, save_weights_atomically
from tasks.layout import RunFolder
from tasks.models.settings import TransferSettings

if TYPE_CHECKING:
    from tasks.models.training import MacroF1EarlyStopping


class EpochCheckpoint(keras.callbacks.Callback):
    """After every epoch: the weights, then a state file naming the completed epoch (the state is
    written last, so it never points at weights that were not fully saved)."""

    def __init__(self, folder: Path, stopper: MacroF1EarlyStopping, rows: list[dict[str, float]]) -> None:
        super().__init__()
        self.folder, self.stopper, self.rows = folder, stopper, rows

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        self.rows.append({"stage": 2, "epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}})
        save_weights_atomically(self.model, RunFolder(self.folder).last_weights, finish=seal_weights)
        if self.stopper.best_epoch == epoch:
            save_weights_atomically(self.model, RunFolder(self.folder).best_weights, finish=seal_weights)
        write_state(self.folder, epoch + 1, self.stopper, self.rows, finished=False)


def write_state(
    folder: Path, completed: int, stopper: MacroF1EarlyStopping, rows: list[dict[str, float]], finished: bool
) -> None:
    """Persist where stage 2 is; read back by `read_state` on a rerun."""
    atomic_write_json(
        RunFolder(folder).transfer_state,
        {
            "completed_epochs": completed,
            "best": stopper.best,
            "best_epoch": stopper.best_epoch,
            "wait": stopper.wait,
            "finished": finished,
            "history": rows,
        },
    )


#: The keys of a stage-2 state file and their JSON types.
STATE_KEYS: dict[str, type | tuple[type, ...]] = {
    "completed_epochs": int,
    "best": (int, float),
    "best_epoch": int,
    "wait": int,
    "finished": bool,
    "history": list,
}


def read_state(folder: Path) -> dict[str, Any] | None:
    """The saved stage-2 state, or None when there is none yet; `DamagedCache` when the state
    file or a weights file it relies on is truncated, garbled or inconsistent."""
    path = RunFolder(folder).transfer_state
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise DamagedCache(path, describe(err)) from err
    expect_keys(path, state, STATE_KEYS)
    done, best_epoch = state["completed_epochs"], state["best_epoch"]
    if done < 0 or state["wait"] < 0 or not -1 <= best_epoch < max(done, 0) or (best_epoch == -1) != (done == 0):
        raise DamagedCache(
            path, f"inconsistent counters: {done} epochs done, best at {best_epoch}, wait {state['wait']}"
        )
    rows = state["history"]
    if not all(isinstance(r, dict) and r.get("stage") == 2 for r in rows):
        raise DamagedCache(path, "history holds rows that are not stage-2 epochs")
    if [r.get("epoch") for r in rows] != list(range(1, done + 1)):
        raise DamagedCache(path, f"history has epochs {[r.get('epoch') for r in rows]}, expected 1..{done}")
    if done:
        check_weights_seal(RunFolder(folder).last_weights)  # also raises when the file is missing
        check_weights_seal(RunFolder(folder).best_weights)
    return state


def checkpoint_key(settings: TransferSettings, split: SplitSettings, embeddings_path: Path, roles: list[str]) -> str:
    """Stage-2 checkpoints are only reused for exactly the same inputs and settings."""
    return fingerprint_text(
        settings.model_dump_json(), split.model_dump_json(), Path(embeddings_path).name, ",".join(roles)
    )


def resume_state(model: keras.Model, stopper: MacroF1EarlyStopping, folder: Path) -> dict[str, Any] | None:
    """Load a checkpoint of ``folder`` into ``model`` (weights and optimizer moments: a true
    resume) and ``stopper`` (best weights); returns its state, or None to start from epoch 1.

    A damaged checkpoint (state file garbled or inconsistent, weights truncated, garbled or not
    loadable) is deleted with one warning, and the model is left exactly as it came in, so stage 2
    then starts from the beginning like a cold run.
    """
    try:
        state = read_state(folder)
    except DamagedCache as err:
        discard(err.path, err.reason, folder)
        return None
    if state is None or not state["completed_epochs"]:
        return state
    weights = model.get_weights()
    # Build the optimizer first, so the checkpoint restores its moments too.
    model.optimizer.build(model.trainable_variables)
    moments = [np.array(v) for v in model.optimizer.variables]
    current = RunFolder(folder).best_weights
    try:
        model.load_weights(current)
        stopper.best_weights = model.get_weights()
        if not state["finished"]:
            current = RunFolder(folder).last_weights
            model.load_weights(current)
    except Exception as err:  # sealed, yet Keras cannot load it (another Keras, another model)
        model.set_weights(weights)
        for variable, value in zip(model.optimizer.variables, moments):
            variable.assign(value)
        stopper.best_weights = None
        discard(current, describe(err), folder)
        return None
    return state
