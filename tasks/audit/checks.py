"""Great Expectations checks on the audit's groups (suite ``audit``, expectations/suites.py).

One row per duplicate group of the split run table: on how many sides of the hold-out its hash
members lie (the grouped split keeps that at one), on how many sides all its members lie (feature
groups included), how many distinct labels its labelled members carry, and whether it joins test
images with labelled ones. The results go into the run's GX store (Data Docs) and
``audit/summary.json``; a critical failure means the split let a duplicate cross the hold-out.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from tasks.data.columns import LABELLED_SPLITS, ROLE_HOLDOUT, ROLE_TRAIN, Target
from tasks.layout import RunFolder
from tasks.validation.gx_results import summarise_suite

#: Examples quoted per failed check.
MAX_EXAMPLES = 5


class DuplicateAcrossHoldout(RuntimeError):
    """A hash duplicate group spans train and hold-out after the grouped split (a bug, not a data problem)."""


def group_table(table: pd.DataFrame, groups: np.ndarray, hash_groups: np.ndarray, target: Target) -> pd.DataFrame:
    """The suite's table: one row per group of two or more (``groups``: merged hash and feature
    groups; ``hash_groups``: the scan's, which drove the split)."""
    frame = table.loc[:, ["split", "role", target]].assign(group=groups, hash_group=hash_groups)
    frame = frame[frame["group"] > 0]
    sides = frame["role"].where(frame["role"].isin([ROLE_TRAIN, ROLE_HOLDOUT]))
    labelled = frame["split"].isin(LABELLED_SPLITS)
    hashed = frame.assign(side=sides)[frame["hash_group"] > 0]
    per_group = pd.DataFrame(
        {
            "sides": sides.groupby(frame["group"]).nunique(),
            "labels": frame[target].where(labelled).groupby(frame["group"]).nunique(),
            "test_and_labelled": labelled.groupby(frame["group"]).agg(lambda s: bool(s.any() and not s.all())),
            "size": frame.groupby("group").size(),
        }
    )
    per_group["hash_sides"] = hashed.groupby("group")["side"].nunique().reindex(per_group.index, fill_value=0)
    return per_group[per_group["size"] > 1].reset_index()


def check_groups(run: RunFolder, per_group: pd.DataFrame) -> dict[str, Any]:
    """Validate the group table with suite ``audit`` in the run's GX context; returns the suite's
    summary (as report.json stores suites). Raises `DuplicateAcrossHoldout` on a critical failure."""
    from expectations import suites as S  # Great Expectations: imported only when a run audits
    from expectations.context import make_context, validate_frame

    context = make_context(run)  # before the suite: GX builds suites against the active context
    suite = S.build_audit_suite()
    result = validate_frame(context, suite, per_group, ["group"], run_name=run.root.name)
    summary = summarise_suite(suite.name, result, MAX_EXAMPLES)
    if summary["failed_critical"]:
        crossing = per_group.loc[per_group["hash_sides"] > 1, "group"].tolist()[:MAX_EXAMPLES]
        raise DuplicateAcrossHoldout(
            f"duplicate group(s) {crossing} span train and hold-out after the grouped split; see {run.audit_duplicates}"
        )
    return summary
