"""The data-validation suites, built in code (one function per suite).

Each suite validates one table that ``tasks.validation.tables`` prepares from the raw files:

============== ================================================ ==============================
suite          table (one row per ...)                          severity of a failure
============== ================================================ ==============================
train_csv      row of public/train.csv, read as raw strings     critical: the run stops
val_csv        row of public/val.csv                            critical
test_csv       row of public/test.csv                           critical
class_balance  labelled train+val row, labels as class names    warning: reported, run goes on
images         referenced image file (the image scan's table)   warning per file; the share of
                                                                unusable files is critical
audit          duplicate group after the split (tasks.audit)    critical: a hash group across
                                                                train and hold-out; warnings:
                                                                feature groups across them,
                                                                conflicting labels, test copies
============== ================================================ ==============================

Derived columns (their names start with ``_``; ``tasks.data.columns`` names them) are computed
by ``tasks.validation.tables`` because row-wise comparisons of two columns are far faster in GX
than set-of-pairs checks: checking fine->coarse with ``ExpectColumnPairValuesToBeInSet`` took ~5 s on 200k rows, the derived
column plus ``ExpectColumnPairValuesToBeEqual`` ~0.4 s (docs/measurements.md).

Every Expectation carries ``meta["rule"]``, a one-line statement of the rule that failure
messages and the Prefect artifact quote.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import expectations.custom as custom
from tasks.data.columns import (  # noqa: F401  (re-exported: the suites' column names)
    ALSO_IN,
    DERIVED_CSV_COLUMNS,
    FAMILY_COARSE,
    IN_RANGE_SUFFIX,
    INT_SUFFIX,
    LABELLED_COLUMNS,
    PIXELS,
    ROW,
    SHORT_SIDE,
    TAXONOMY_COARSE,
    USABLE_LABELLED,
    USABLE_TEST,
    in_range_column,
    int_column,
    name_column,
)
from tasks.data.dataset import OUTSIDE_PUBLIC

#: A plain file name inside its split folder (the same rule as tasks.data.dataset.unsafe_filename_reason):
#: no path separator, no NUL, not "." or anything starting with "..", no surrounding whitespace.
SAFE_FILENAME_REGEX = r"^(?!\.\.)(?!\.\Z)(?!\s)[^/\\\x00]*[^/\\\x00\s]\Z"
#: A whole number as written in a CSV ("3", "3.0", " 3 ").
INTEGER_REGEX = r"^\s*[+-]?\d+(?:\.0*)?\s*\Z"
IMAGE_FORMATS: tuple[str, ...] = ("JPEG", "MPO", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def _with_rule(expectation: Any, rule: str, severity: str = "critical") -> Any:
    expectation.meta = {**(expectation.meta or {}), "rule": rule}
    expectation.severity = severity
    return expectation


def _suite(name: str, items: list[Any]) -> Any:
    import great_expectations as gx

    suite = gx.ExpectationSuite(name=name)
    for item in items:
        suite.add_expectation(item)
    return suite


def filename_expectations(split: str) -> list[Any]:
    """filename: present, not null, unique, a safe plain file name, and its image (symlinks
    followed) inside ``public/``."""
    import great_expectations.expectations as gxe

    return [
        _with_rule(gxe.ExpectColumnValuesToNotBeNull(column="filename"), f"{split}.csv: every row has a filename"),
        _with_rule(gxe.ExpectColumnValuesToBeUnique(column="filename"), f"{split}.csv: no filename is listed twice"),
        _with_rule(
            gxe.ExpectColumnValuesToMatchRegex(column="filename", regex=SAFE_FILENAME_REGEX),
            f"{split}.csv: filenames are plain file names (no '/', '\\', '..', NUL or "
            f"surrounding spaces), so they cannot point outside public/{split}/",
        ),
        _with_rule(
            gxe.ExpectColumnValuesToBeNull(
                column=OUTSIDE_PUBLIC, description="every image, symlinks followed, lies inside public/"
            ),
            f"{split}.csv: every listed image, symlinks followed, lies inside the data directory's public/ "
            f"folder (a link to a file elsewhere, or a public/{split} folder that links elsewhere, is refused)",
        ),
    ]


def row_count_expectation(split: str, min_rows: int, max_rows: int) -> Any:
    import great_expectations.expectations as gxe

    return _with_rule(
        gxe.ExpectTableRowCountToBeBetween(min_value=min_rows, max_value=max_rows),
        f"{split}.csv has between {min_rows:,} and {max_rows:,} rows",
    )


def build_labelled_csv_suite(
    split: str,
    n_coarse: int,
    n_fine: int,
    *,
    known_taxonomy: bool,
    other_splits: Sequence[str],
    min_rows: int,
    max_rows: int,
) -> Any:
    """Suite ``<split>_csv`` for a labelled CSV (train or val), read as raw strings.

    Schema and label problems are all critical: exact columns, filename rules, integer labels in
    range of info.json, fine->coarse consistent (each family in one coarse class; the known
    taxonomy when info.json has the known names), row-count bounds, and no filename shared with
    ``other_splits``.
    """
    import great_expectations.expectations as gxe

    items: list[Any] = [
        _with_rule(
            gxe.ExpectTableColumnsToMatchSet(
                column_set=[*LABELLED_COLUMNS, *DERIVED_CSV_COLUMNS, OUTSIDE_PUBLIC], exact_match=True
            ),
            f"{split}.csv has exactly the columns filename,fine,coarse",
        ),
        row_count_expectation(split, min_rows, max_rows),
        *filename_expectations(split),
    ]
    for target, n_classes in (("coarse", n_coarse), ("fine", n_fine)):
        items += [
            _with_rule(
                gxe.ExpectColumnValuesToNotBeNull(column=target), f"{split}.csv: every row has a {target} label"
            ),
            _with_rule(
                gxe.ExpectColumnValuesToMatchRegex(column=target, regex=INTEGER_REGEX),
                f"{split}.csv: {target} labels are whole numbers",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(
                    column=int_column(target),
                    min_value=0,
                    max_value=n_classes - 1,
                    description=f"{target} is a class index in 0..{n_classes - 1} (info.json)",
                ),
                f'{split}.csv: {target} labels are class indices 0..{n_classes - 1} of info.json["{target}"]',
            ),
        ]
    items.append(
        _with_rule(
            gxe.ExpectColumnPairValuesToBeEqual(
                column_A=in_range_column("coarse"),
                column_B=FAMILY_COARSE,
                ignore_row_if="either_value_is_missing",
                description="each family (fine) has one coarse class across train and val",
            ),
            f"{split}.csv: every family (fine label) has a single coarse class across train and val "
            f"(a row disagreeing with the family's majority is flagged)",
        )
    )
    if known_taxonomy:
        items.append(
            _with_rule(
                gxe.ExpectColumnPairValuesToBeEqual(
                    column_A=in_range_column("coarse"),
                    column_B=TAXONOMY_COARSE,
                    ignore_row_if="either_value_is_missing",
                    description="coarse matches the known taxonomy of the fine family",
                ),
                f"{split}.csv: coarse is the known coarse class of the fine family (docs/dataset.md)",
            )
        )
    if other_splits:
        items.append(
            _with_rule(
                gxe.ExpectColumnValuesToBeNull(
                    column=ALSO_IN, description=f"no filename also in {'/'.join(other_splits)}.csv"
                ),
                f"{split}.csv: no filename is also listed in {' or '.join(f'{s}.csv' for s in other_splits)}",
            )
        )
    return _suite(f"{split}_csv", items)


def build_test_csv_suite(*, other_splits: Sequence[str], min_rows: int, max_rows: int) -> Any:
    """Suite ``test_csv``: filename present, not null, unique, safe; no overlap with train/val.

    The test CSV's label columns are placeholders and are not checked.
    """
    import great_expectations.expectations as gxe

    items = [
        _with_rule(gxe.ExpectColumnToExist(column="filename"), "test.csv has a filename column"),
        row_count_expectation("test", min_rows, max_rows),
        *filename_expectations("test"),
        _with_rule(
            gxe.ExpectColumnValuesToBeNull(
                column=ALSO_IN, description=f"no filename also in {'/'.join(other_splits)}.csv"
            ),
            f"test.csv: no filename is also listed in {' or '.join(f'{s}.csv' for s in other_splits)}",
        ),
    ]
    return _suite("test_csv", items)


def build_balance_suite(
    classes: dict[str, Sequence[str]],
    *,
    min_class_count: int,
    max_imbalance_ratio: float,
    reference: dict[str, dict[str, float]] | None,
    reference_name: str,
    max_kl_divergence: float,
) -> Any:
    """Suite ``class_balance`` on train+val labels as class names; every failure is a warning.

    Per target (coarse, fine): every class present at least ``min_class_count`` times; largest /
    smallest class at most ``max_imbalance_ratio``; KL divergence of the observed label
    distribution from ``reference`` (class name -> share) at most ``max_kl_divergence``.
    """
    import great_expectations.expectations as gxe

    items: list[Any] = []
    for target, names in classes.items():
        column = name_column(target)
        items += [
            _with_rule(
                custom.ExpectColumnValueCountsToBeAtLeast(
                    column=column,
                    value_set=list(names),
                    min_count=min_class_count,
                    description=f"every {target} class has at least {min_class_count} train+val images",
                ),
                f"every {target} class has at least {min_class_count} images in train+val",
                "warning",
            ),
            _with_rule(
                custom.ExpectColumnImbalanceRatioToBeLessThan(
                    column=column,
                    max_ratio=max_imbalance_ratio,
                    description=f"largest/smallest {target} class is at most {max_imbalance_ratio:g}",
                ),
                f"largest/smallest {target} class ratio is at most {max_imbalance_ratio:g}",
                "warning",
            ),
        ]
        shares = (reference or {}).get(target)
        if shares:
            values = [name for name in names if name in shares]
            weights = [max(float(shares[name]), 1e-6) for name in values]
            total = sum(weights)
            items.append(
                _with_rule(
                    gxe.ExpectColumnKLDivergenceToBeLessThan(
                        column=column,
                        partition_object={"values": values, "weights": [w / total for w in weights]},
                        threshold=max_kl_divergence,
                        description=f"{target} label distribution is within KL {max_kl_divergence:g} of the "
                        f"{reference_name} distribution",
                    ),
                    f"{target} label distribution is close to the {reference_name} distribution "
                    f"(KL divergence at most {max_kl_divergence:g})",
                    "warning",
                )
            )
    return _suite("class_balance", items)


def build_image_suite(*, min_short_side: int, max_pixels: int, max_bad_fraction: float) -> Any:
    """Suite ``images`` on the image scan table.

    Per-file rules are warnings (each bad file is listed, and quarantined if it is a training
    image); the share of unusable images is critical: above ``max_bad_fraction`` of train+val
    (or of test) the run stops.
    """
    import great_expectations.expectations as gxe

    keep = 1.0 - max_bad_fraction
    return _suite(
        "images",
        [
            _with_rule(
                gxe.ExpectColumnValuesToBeInSet(column="exists", value_set=[True]),
                "every referenced image file exists",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(column="size_bytes", min_value=1),
                "no image file is empty (0 bytes)",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeInSet(column="decodes", value_set=[True]),
                "every image decodes completely (not truncated, not another kind of file)",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeInSet(column="format", value_set=list(IMAGE_FORMATS)),
                f"images are in a common format ({', '.join(IMAGE_FORMATS)})",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(
                    column=SHORT_SIDE, min_value=min_short_side, description=f"short side >= {min_short_side} px"
                ),
                f"every image's short side is at least {min_short_side} px",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(
                    column=PIXELS, max_value=max_pixels, description=f"at most {max_pixels:,} pixels"
                ),
                f"no image has more than {max_pixels:,} pixels (decompression bomb)",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeInSet(
                    column=USABLE_LABELLED,
                    value_set=[True],
                    mostly=keep,
                    description=f"at most {max_bad_fraction:.2%} of train+val images unusable",
                ),
                f"at most {max_bad_fraction:.2%} of train+val images are unusable (they are quarantined)",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeInSet(
                    column=USABLE_TEST,
                    value_set=[True],
                    mostly=keep,
                    description=f"at most {max_bad_fraction:.2%} of test images unusable",
                ),
                f"at most {max_bad_fraction:.2%} of test images are unusable (they get the fallback prediction)",
            ),
        ],
    )


def build_audit_suite() -> Any:
    """Suite ``audit`` on one row per duplicate group of a split run table (`tasks.audit.checks`).

    Critical: no group of the scan's hash duplicates (which the grouped hold-out keeps on one
    side) spans train and hold-out. Warnings: groups found only from backbone features that span
    them (listed, acted on with ``--audit.exclude-near-duplicates``), groups whose labelled members
    disagree, and groups that join test images with labelled ones.
    """
    import great_expectations.expectations as gxe

    return _suite(
        "audit",
        [
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(column="hash_sides", max_value=1),
                "no duplicate group (same bytes, or a resized, re-encoded, cropped or mirrored copy) spans train and hold-out",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(column="sides", max_value=1),
                "no near-duplicate group found from backbone features spans train and hold-out",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeBetween(column="labels", max_value=1),
                "the labelled members of a duplicate group carry one label",
                "warning",
            ),
            _with_rule(
                gxe.ExpectColumnValuesToBeInSet(column="test_and_labelled", value_set=[False]),
                "no test image duplicates a labelled image",
                "warning",
            ),
        ],
    )
