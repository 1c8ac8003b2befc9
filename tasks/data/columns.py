"""Column names, splits, targets and roles of the pipeline's tables, named once.

Why a module of its own: the table builders of ``tasks.validation``, the suites of
``expectations.suites`` and the loaders of ``tasks.data`` must agree on these names, and most of
them must not import Great Expectations or TensorFlow (seconds) just to learn a column name. This
module imports nothing but ``typing``.
"""

from __future__ import annotations

from typing import Literal

# --- the sample table (tasks.data.dataset, <run>/validation/samples.csv) -----------------------
Target = Literal["coarse", "fine"]
TARGETS: tuple[Target, ...] = ("coarse", "fine")
LABELLED_SPLITS: tuple[str, ...] = ("train", "val")
SPLITS: tuple[str, ...] = ("train", "val", "test")
SAMPLE_COLUMNS: tuple[str, ...] = ("split", "filename", "path", "coarse", "fine")
#: Added by validation: False for a test image that cannot be read (it gets the fallback prediction).
IMAGE_OK = "image_ok"
#: Added by validation: the duplicate group of an image (tasks.data.groups), empty when it has none.
GROUP = "group"

# --- roles of the split table (tasks.data.splitting) -------------------------------------------
ROLE_TRAIN, ROLE_HOLDOUT, ROLE_TEST = "train", "holdout", "test"
#: A labelled image kept out of training by the data audit (tasks.audit), never a hold-out image.
ROLE_EXCLUDED = "excluded"

# --- the raw CSVs, as validation reads them ------------------------------------------------------
LABELLED_COLUMNS: tuple[str, ...] = ("filename", "fine", "coarse")

# --- derived columns of the tables the validation suites check (names start with "_") ---------
ROW = "_row"  # 1-based data row; the file line is ROW + 1 (the header is line 1)
ALSO_IN = "_also_in"  # the other split(s) whose CSV lists the same filename, else null
INT_SUFFIX = "_int"  # "_coarse_int": the label as a number when it is a whole number, else null
IN_RANGE_SUFFIX = "_in_range"  # "_coarse_in_range": the label when it is a valid class index
TAXONOMY_COARSE = "_taxonomy_coarse"  # coarse class of the row's fine label in the known taxonomy
FAMILY_COARSE = "_family_coarse"  # the coarse class most rows of this family carry (train+val)


def int_column(target: str) -> str:
    """``_coarse_int`` / ``_fine_int``: the raw label as a whole number, else null."""
    return f"_{target}{INT_SUFFIX}"


def in_range_column(target: str) -> str:
    """``_coarse_in_range`` / ``_fine_in_range``: the label when it is a valid class index, else null."""
    return f"_{target}{IN_RANGE_SUFFIX}"


def name_column(target: str) -> str:
    """``coarse_name`` / ``fine_name``: a label as its class name (the class-balance table)."""
    return f"{target}_name"


DERIVED_CSV_COLUMNS: tuple[str, ...] = (
    ROW,
    ALSO_IN,
    int_column("fine"),
    int_column("coarse"),
    in_range_column("fine"),
    in_range_column("coarse"),
    TAXONOMY_COARSE,
    FAMILY_COARSE,
)

# --- derived columns of the image table ----------------------------------------------------------
SHORT_SIDE = "_short_side"
PIXELS = "_pixels"
USABLE_LABELLED = "_usable_train_val"  # True/False for train+val images, null for test images
USABLE_TEST = "_usable_test"  # True/False for test images, null for train+val images
