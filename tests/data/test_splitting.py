"""The hold-out: carved before anything else, stratified, reproducible, disjoint from training."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tasks.data.dataset import load_samples
from tasks.data.splitting import (
    SplitError,
    assign_roles,
    carve_validation_slice,
    read_split,
    write_split,
)


@pytest.fixture()
def samples(tiny_sample_master: Path) -> pd.DataFrame:
    return load_samples(tiny_sample_master)[0]


@pytest.mark.parametrize("target", ["coarse", "fine"])
def test_holdout_is_stratified_and_disjoint(samples: pd.DataFrame, target: str) -> None:
    table = assign_roles(samples, target, 0.2, seed=1)
    train, holdout = table[table["role"] == "train"], table[table["role"] == "holdout"]
    assert set(train["filename"]).isdisjoint(holdout["filename"])
    labelled = samples[samples["split"] != "test"]
    assert len(train) + len(holdout) == len(labelled)
    assert abs(len(holdout) / len(labelled) - 0.2) < 0.02
    assert set(holdout[target].astype(int)) == set(labelled[target].astype(int))  # every class scored
    assert (table.loc[table["split"] == "test", "role"] == "test").all()


def test_split_is_reproducible_and_seed_dependent(samples: pd.DataFrame) -> None:
    a = assign_roles(samples, "coarse", 0.2, seed=3)["role"].tolist()
    b = assign_roles(samples, "coarse", 0.2, seed=3)["role"].tolist()
    c = assign_roles(samples, "coarse", 0.2, seed=4)["role"].tolist()
    assert a == b and a != c


def test_persisted_split_restores_the_same_roles(samples: pd.DataFrame, tmp_path: Path) -> None:
    table = assign_roles(samples, "coarse", 0.25, seed=5)
    persisted = read_split(write_split(table, tmp_path / "split.csv"))
    restored = samples.merge(persisted, on=["split", "filename"], how="left", validate="one_to_one")
    assert restored["role"].tolist() == table["role"].tolist()


def test_kaggle_val_mode_uses_val_as_holdout(samples: pd.DataFrame) -> None:
    table = assign_roles(samples, "coarse", 0.2, seed=0, mode="kaggle-val")
    assert (table.loc[table["split"] == "val", "role"] == "holdout").all()
    assert (table.loc[table["split"] == "train", "role"] == "train").all()


def test_validation_slice_comes_from_train_only(samples: pd.DataFrame) -> None:
    table = assign_roles(samples, "coarse", 0.2, seed=2)
    train = table[table["role"] == "train"]
    fit, val = carve_validation_slice(train, "coarse", 0.15, seed=2)
    holdout = set(table.loc[table["role"] == "holdout", "filename"])
    assert holdout.isdisjoint(val["filename"]) and holdout.isdisjoint(fit["filename"])
    assert set(fit["filename"]).isdisjoint(val["filename"])
    assert len(fit) + len(val) == len(train)


def test_class_with_one_image_cannot_be_stratified(samples: pd.DataFrame) -> None:
    labelled = samples[samples["split"] != "test"]
    lonely = labelled[labelled["coarse"] == 1].index[1:]  # leave one Reptilia image
    with pytest.raises(SplitError, match=r"class\(es\) \[1\]"):
        assign_roles(samples.drop(index=lonely), "coarse", 0.2, seed=0)
