"""What the feature audit found (`Findings`), cached per input, so a warm rerun reads it instead
of refitting the probe and searching neighbours again.

The key covers everything `tasks.audit.stage.audit_features` reads: the features file (its
name carries its content key, see `tasks.models.embeddings`; its size is added), the table
columns it uses (roles, labels, hash groups, decode flags), the audit settings, the target and
the seed, plus `CACHE_VERSION` (bumped when the method changes). The file is a plain ``.npz``
(no pickles: nothing read back can run code); a damaged one is named once, deleted and recomputed.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from tasks.cache_files import DamagedCache, check_array, discard, read_npz
from tasks.data.columns import GROUP, IMAGE_OK
from tasks.io import atomic_write
from tasks.models.features import portable_path

#: Bumped whenever what the findings mean changes for the same inputs (the probe, the groups).
CACHE_VERSION = 3
#: Arrays of one cached findings file.
ARRAYS = ("groups", "hash_groups", "feature_pairs", "row", "given", "suggested", "score")
#: Table columns the findings depend on (those absent from a table are skipped).
KEY_COLUMNS = ("filename", "role", "coarse", "fine", GROUP, IMAGE_OK)


@dataclass(frozen=True)
class Findings:
    """What the feature audit found: a group id per table row (hash and feature groups merged;
    0: none), the hash groups alone, how many feature pairs there were, and the label-issue
    candidates (row, given, suggested, score)."""

    groups: np.ndarray
    hash_groups: np.ndarray
    feature_pairs: int
    label_issues: pd.DataFrame


def findings_key(table: pd.DataFrame, embeddings: Path, settings_json: str, target: str, seed: int) -> str:
    """A content key of the audit's inputs (a hash, never a path)."""
    digest = hashlib.sha256(f"audit-findings-v{CACHE_VERSION}|{settings_json}|{target}|{seed}".encode())
    digest.update(f"{portable_path(str(embeddings))}|{Path(embeddings).stat().st_size}".encode())
    columns = [c for c in KEY_COLUMNS if c in table.columns]
    digest.update("|".join(columns).encode())
    digest.update(pd.util.hash_pandas_object(table.loc[:, columns].astype("string"), index=True).to_numpy().tobytes())
    return digest.hexdigest()[:24]


def findings_path(cache_dir: Path, key: str) -> Path:
    """``<cache>/audit/<key>.npz``."""
    return Path(cache_dir) / "audit" / f"{key}.npz"


def cached_findings(path: Path, n_rows: int, compute: Callable[[], Findings]) -> Findings:
    """The findings stored at ``path`` (for a table of ``n_rows``), else computed and saved there."""
    if path.is_file():
        try:
            return read_findings(path, n_rows)
        except DamagedCache as damage:
            discard(path, damage.reason)
    found = compute()
    atomic_write(path, lambda tmp: save_findings(tmp, found))
    return found


def save_findings(tmp: Path, found: Findings) -> None:
    issues = found.label_issues
    with open(tmp, "wb") as handle:
        np.savez(
            handle,
            groups=np.asarray(found.groups, np.int64),
            hash_groups=np.asarray(found.hash_groups, np.int64),
            feature_pairs=np.asarray([found.feature_pairs], np.int64),
            row=issues["row"].to_numpy(dtype=np.int64),
            given=issues["given"].to_numpy(dtype=np.int64),
            suggested=issues["suggested"].to_numpy(dtype=np.int64),
            score=issues["score"].to_numpy(dtype=np.float64),
        )


def read_findings(path: Path, n_rows: int) -> Findings:
    """Stored findings, checked: a group per table row, label issues naming rows of the table."""
    arrays = read_npz(path, ARRAYS)
    for name in ("groups", "hash_groups"):
        check_array(path, name, arrays[name], (n_rows,), np.int64)
    issues = pd.DataFrame({name: arrays[name] for name in ("row", "given", "suggested", "score")})
    if len(issues) and not (0 <= issues["row"].min() and issues["row"].max() < n_rows):
        raise DamagedCache(path, f"label issues name rows outside the table's {n_rows}")
    return Findings(arrays["groups"], arrays["hash_groups"], int(arrays["feature_pairs"][0]), issues)
