"""Hold-out split, made once, before any resampling or augmentation (docs/original-project.md).

The original project oversampled by writing rotated copies to disk before splitting, so its
validation set contained copies of training images. Here train+val are merged, a stratified
hold-out is carved with the seed, and the assignment is persisted (filename -> role) so every
model of a run, and every rerun with the same seed, is scored on exactly the same images.

Duplicates (validation's ``group`` column, tasks.data.groups) never cross the hold-out: the
stratified hold-out is carved as before, then each group that landed on both sides is moved whole
to the side that holds most of its members (ties: train, so the hold-out only shrinks). Without
groups the split is exactly the ungrouped one. With ``kaggle-val`` the sides are fixed, so the
train members of a group that crosses are excluded from training (role ``excluded``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
from sklearn.model_selection import train_test_split

from tasks.data.columns import GROUP, LABELLED_SPLITS, ROLE_EXCLUDED, ROLE_HOLDOUT, ROLE_TEST, ROLE_TRAIN, Target
from tasks.data.dataset import read_samples
from tasks.io import atomic_write_text
from tasks.layout import RunFolder

HoldoutMode = Literal["stratified", "kaggle-val"]


class SplitError(ValueError):
    """The labelled data cannot be split as asked (for example a class with a single image)."""


def assign_roles(
    samples: pd.DataFrame, target: Target, fraction: float, seed: int, mode: HoldoutMode = "stratified"
) -> pd.DataFrame:
    """Return ``samples`` with a ``role`` column: train, holdout or test.

    ``stratified`` merges the Kaggle train and val splits and carves a stratified hold-out of
    ``fraction``; ``kaggle-val`` uses the Kaggle val split as the hold-out.
    """
    labelled = samples[samples["split"].isin(LABELLED_SPLITS)]
    roles = pd.Series(ROLE_TEST, index=samples.index, dtype="string")
    if mode == "kaggle-val":
        roles[labelled.index] = labelled["split"].map({"train": ROLE_TRAIN, "val": ROLE_HOLDOUT})
    else:
        holdout_index = stratified_holdout_index(labelled, target, fraction, seed)
        roles[labelled.index] = ROLE_TRAIN
        roles[holdout_index] = ROLE_HOLDOUT
    return samples.assign(role=keep_groups_together(roles, group_ids(samples), move=mode == "stratified"))


def group_ids(samples: pd.DataFrame) -> pd.Series:
    """Each row's duplicate group (0: none), from validation's ``group`` column when there is one."""
    if GROUP not in samples:
        return pd.Series(0, index=samples.index, dtype="int64")
    return pd.to_numeric(samples[GROUP], errors="coerce").fillna(0).astype("int64")


def keep_groups_together(roles: pd.Series, groups: pd.Series, move: bool = True) -> pd.Series:
    """Roles where no duplicate group has members both in train and in the hold-out: a group that
    crosses moves whole to the side of most of its members (ties: train); ``move=False`` (fixed
    sides) excludes its train members from training instead. Unchanged when nothing crosses."""
    labelled = roles.isin([ROLE_TRAIN, ROLE_HOLDOUT]) & (groups > 0)
    if not labelled.any():
        return roles
    sides = pd.crosstab(groups[labelled], roles[labelled])
    for role in (ROLE_TRAIN, ROLE_HOLDOUT):
        if role not in sides:
            sides[role] = 0
    crossing = sides[(sides[ROLE_TRAIN] > 0) & (sides[ROLE_HOLDOUT] > 0)]
    if crossing.empty:
        return roles
    roles = roles.copy()
    for group, row in crossing.iterrows():
        members = labelled & (groups == group)
        if not move:
            roles[members & (roles == ROLE_TRAIN)] = ROLE_EXCLUDED
        else:
            roles[members] = ROLE_HOLDOUT if row[ROLE_HOLDOUT] > row[ROLE_TRAIN] else ROLE_TRAIN
    return roles


def stratified_holdout_index(labelled: pd.DataFrame, target: Target, fraction: float, seed: int) -> pd.Index:
    """Index of a stratified hold-out sample; every class keeps images on both sides."""
    if not 0.0 < fraction < 1.0:
        raise SplitError(f"hold-out fraction must be between 0 and 1, got {fraction}")
    labels = labelled[target].astype(int)
    counts = labels.value_counts()
    too_small = counts[counts < 2]
    if not too_small.empty:
        raise SplitError(
            f"cannot stratify on {target}: class(es) {sorted(too_small.index.tolist())} have fewer "
            f"than 2 labelled images"
        )
    n_holdout = max(int(round(len(labelled) * fraction)), len(counts))
    try:
        _, holdout = train_test_split(labelled.index, test_size=n_holdout, stratify=labels, random_state=seed)
    except ValueError as exc:  # e.g. more classes than hold-out slots
        raise SplitError(f"cannot carve a stratified hold-out of {fraction:.0%}: {exc}") from exc
    return pd.Index(holdout)


def carve_validation_slice(
    train: pd.DataFrame, target: Target, fraction: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split the TRAIN side into (fit, validation) for early stopping; the hold-out is never used."""
    index = stratified_holdout_index(train, target, fraction, seed + 1)
    return train.drop(index=index), train.loc[index]


def write_split(samples_with_roles: pd.DataFrame, path: Path) -> Path:
    """Persist filename -> role, so that reruns and other models use the same hold-out."""
    columns = ["filename", "split", "role"]
    return atomic_write_text(path, samples_with_roles.loc[:, columns].to_csv(index=False))


def read_split(path: Path) -> pd.DataFrame:
    """Read a persisted split (filename, split, role), every value a string as written."""
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def split_dataset(
    samples_path: Path, run_dir: Path, target: Target, fraction: float, seed: int, mode: HoldoutMode
) -> Path:
    """Assign roles, persist ``split.csv`` and the role-annotated ``table.csv``; return the table's path."""
    run = RunFolder(run_dir)
    table = assign_roles(read_samples(samples_path), target, fraction, seed, mode)
    write_split(table, run.split)
    return atomic_write_text(run.table, table.to_csv(index=False))


def read_table(path: Path) -> pd.DataFrame:
    """Read the role-annotated sample table written by `split_dataset`."""
    return read_samples(path)
