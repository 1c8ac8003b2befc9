"""Plant known data problems into a Kaggle-layout dataset: duplicates across splits, wrong labels.

The data audit (tasks.validation.audit, tasks.audit) is tested on a sample with planted cases, and
the embedded sample carries a few so that a first run shows the audit's section filled. Each
planted duplicate is a copy of a train image added to another split (or to train) under a new
40-hex name, with the original's labels (test rows: placeholder labels 0,0, like every test row):

- ``exact``: the same bytes;
- ``resized_q50``: resized to 60% and re-encoded at JPEG quality 50;
- ``crop10``: 10% cropped off each side (JPEG quality 90);
- ``mirror``: mirrored left-right (JPEG quality 90).

A switched label moves a train image to a family of another taxon, and its coarse label to that
family's taxon (a consistent pair, as a real labelling slip would be). What was planted is returned
and written to ``planted.json`` beside ``public/`` (never read by the pipeline).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageOps

from tasks.data.taxonomy import FINE_TO_COARSE

PLANTED_NAME = "planted.json"
COPY_KINDS = ("exact", "resized_q50", "crop10", "mirror")
#: Where each kind of copy goes, in turn (so copies cross train, val and test).
_TARGET_SPLITS = ("val", "test", "train", "val", "test", "train")


def _copy_name(seed: int, original: str, kind: str) -> str:
    return hashlib.sha1(f"living-things-planted/{seed}/{original}/{kind}".encode()).hexdigest() + ".jpg"


def write_copy(source: Path, target: Path, kind: str) -> None:
    """One planted copy of ``source`` (see the module's docstring for the kinds)."""
    if kind == "exact":
        shutil.copyfile(source, target)
        return
    with Image.open(source) as opened:
        image = opened.convert("RGB")
    width, height = image.size
    if kind == "resized_q50":
        image.resize((max(int(width * 0.6), 1), max(int(height * 0.6), 1)), Image.Resampling.BICUBIC).save(
            target, "JPEG", quality=50
        )
    elif kind == "crop10":
        dx, dy = int(round(width * 0.1)), int(round(height * 0.1))
        image.crop((dx, dy, width - dx, height - dy)).save(target, "JPEG", quality=90)
    elif kind == "mirror":
        ImageOps.mirror(image).save(target, "JPEG", quality=90)
    else:
        raise ValueError(f"unknown copy kind {kind!r}")


def plant_cases(data_dir: Path, n_originals: int, switched_share: float, seed: int = 0) -> dict[str, Any]:
    """Plant ``n_originals`` x every copy kind, and switch ``switched_share`` of the original train
    labels; return (and write to ``planted.json``) what was planted."""
    public = Path(data_dir) / "public"
    rng = np.random.default_rng([seed, 27])
    tables = {s: pd.read_csv(public / f"{s}.csv", dtype={"filename": str}) for s in ("train", "val", "test")}
    train = tables["train"]
    n_switched = int(round(len(train) * switched_share))
    chosen = rng.permutation(len(train))
    originals, switch_rows = chosen[:n_originals], chosen[n_originals : n_originals + n_switched]
    added: dict[str, list[dict[str, Any]]] = {s: [] for s in tables}
    pairs = []
    turn = 0
    for row in originals:
        original = train.iloc[row]
        for kind in COPY_KINDS:
            split = _TARGET_SPLITS[turn % len(_TARGET_SPLITS)]
            turn += 1
            name = _copy_name(seed, original["filename"], kind)
            write_copy(public / "train" / original["filename"], public / split / name, kind)
            fine, coarse = (0, 0) if split == "test" else (int(original["fine"]), int(original["coarse"]))
            added[split].append({"filename": name, "fine": fine, "coarse": coarse})
            pairs.append({"original": original["filename"], "copy": name, "split": split, "kind": kind})
    switched = []
    for row in switch_rows:
        fine = int(train.at[row, "fine"])
        others = [f for f in range(len(FINE_TO_COARSE)) if FINE_TO_COARSE[f] != FINE_TO_COARSE[fine]]
        new = int(rng.choice(others))
        switched.append({"filename": train.at[row, "filename"], "true": fine, "given": new})
        train.at[row, "fine"], train.at[row, "coarse"] = new, FINE_TO_COARSE[new]
    for split, table in tables.items():
        if added[split]:
            table = pd.concat([table, pd.DataFrame(added[split])], ignore_index=True)
        table.loc[:, ["filename", "fine", "coarse"]].to_csv(public / f"{split}.csv", index=False)
    planted = {"pairs": pairs, "switched": switched, "seed": seed}
    (Path(data_dir) / PLANTED_NAME).write_text(json.dumps(planted, indent=1), encoding="utf-8")
    return planted
