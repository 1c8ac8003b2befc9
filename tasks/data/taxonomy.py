"""Known facts about the Kaggle `living-thing-classification-coarse` labels.

Label index i means `info.json["coarse"][i]` (or `["fine"][i]`): the order below is the
competition's, NOT alphabetical. The original project lost every class id but one by
assuming alphabetical order, so everything downstream uses these tuples (or the ones read
from a user's info.json) and never sorts class names.
"""

from __future__ import annotations

COARSE_NAMES: tuple[str, ...] = (
    "Aves",
    "Reptilia",
    "Mammalia",
    "Arachnida",
    "Magnoliopsida",
    "Insecta",
    "Liliopsida",
    "Pinopsida",
)

FINE_NAMES: tuple[str, ...] = (
    "Scolopacidae",
    "Laridae",
    "Accipitridae",
    "Anatidae",
    "Corvidae",
    "Icteridae",
    "Picidae",
    "Colubridae",
    "Sciuridae",
    "Rosaceae",
    "Cyperaceae",
    "Brassicaceae",
    "Sphingidae",
    "Orchidaceae",
    "Apidae",
    "Papilionidae",
    "Orobanchaceae",
    "Liliaceae",
    "Apocynaceae",
    "Poaceae",
    "Araneidae",
    "Pinaceae",
    "Asparagaceae",
    "Acrididae",
    "Hesperiidae",
    "Rubiaceae",
    "Onagraceae",
    "Libellulidae",
    "Fagaceae",
    "Cactaceae",
    "Lycaenidae",
    "Coenagrionidae",
    "Boraginaceae",
    "Ranunculaceae",
    "Polygonaceae",
    "Pieridae",
    "Caryophyllaceae",
    "Lamiaceae",
    "Noctuidae",
    "Apiaceae",
    "Malvaceae",
    "Geometridae",
    "Plantaginaceae",
    "Euphorbiaceae",
    "Crambidae",
    "Parulidae",
    "Erebidae",
    "Ericaceae",
    "Passerellidae",
    "Tyrannidae",
)

_FAMILIES_BY_COARSE: dict[str, tuple[str, ...]] = {
    "Aves": (
        "Scolopacidae",
        "Laridae",
        "Accipitridae",
        "Anatidae",
        "Corvidae",
        "Icteridae",
        "Picidae",
        "Parulidae",
        "Passerellidae",
        "Tyrannidae",
    ),
    "Reptilia": ("Colubridae",),
    "Mammalia": ("Sciuridae",),
    "Arachnida": ("Araneidae",),
    "Magnoliopsida": (
        "Rosaceae",
        "Brassicaceae",
        "Orobanchaceae",
        "Apocynaceae",
        "Rubiaceae",
        "Onagraceae",
        "Fagaceae",
        "Cactaceae",
        "Boraginaceae",
        "Ranunculaceae",
        "Polygonaceae",
        "Caryophyllaceae",
        "Lamiaceae",
        "Apiaceae",
        "Malvaceae",
        "Plantaginaceae",
        "Euphorbiaceae",
        "Ericaceae",
    ),
    "Insecta": (
        "Sphingidae",
        "Apidae",
        "Papilionidae",
        "Acrididae",
        "Hesperiidae",
        "Libellulidae",
        "Lycaenidae",
        "Coenagrionidae",
        "Pieridae",
        "Noctuidae",
        "Geometridae",
        "Crambidae",
        "Erebidae",
    ),
    "Liliopsida": ("Cyperaceae", "Orchidaceae", "Poaceae", "Liliaceae", "Asparagaceae"),
    "Pinopsida": ("Pinaceae",),
}

#: fine index -> coarse index, in info.json order (the real dataset's taxonomy).
FINE_TO_COARSE: tuple[int, ...] = tuple(
    COARSE_NAMES.index(next(c for c, fams in _FAMILIES_BY_COARSE.items() if fine in fams)) for fine in FINE_NAMES
)

#: Approximate images per family in the real train+val (about 3,000 each, docs/dataset.md).
REAL_IMAGES_PER_FAMILY = 3000


def families_of(coarse_index: int) -> tuple[int, ...]:
    """Fine indices belonging to one coarse class, in info.json order."""
    return tuple(f for f, c in enumerate(FINE_TO_COARSE) if c == coarse_index)


def real_coarse_distribution() -> dict[str, float]:
    """The real dataset's coarse class shares (families are balanced, so shares follow family counts)."""
    counts = [len(families_of(c)) for c in range(len(COARSE_NAMES))]
    total = sum(counts)
    return {name: n / total for name, n in zip(COARSE_NAMES, counts)}
