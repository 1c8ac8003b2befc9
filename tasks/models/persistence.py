"""Saving and loading fitted models without pickle: a model file found on disk cannot run code.

scikit-learn models are written with ``skops.io`` (``.skops``: a zip of JSON and ``.npy``
arrays) and read back with an explicit list of trusted types (`TRUSTED_SKOPS_TYPES`) on top of
skops' own defaults; Keras models (``.keras``) are read back with ``safe_mode=True``, which
refuses Lambda layers and other serialized Python code. Anything else (a ``.joblib`` or
``.pkl`` file, an untrusted type, a damaged file) is refused with `UnsafeModelFile`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.io import atomic_write

#: Suffix of a saved scikit-learn model (``RunFolder.model_file(name, SKLEARN_SUFFIX)``).
SKLEARN_SUFFIX = ".skops"
#: Suffix of a saved Keras model.
KERAS_SUFFIX = ".keras"

#: Types that skops does not trust by default but our models contain, reviewed once:
#: ``skops.io.get_untrusted_types`` on a saved RandomForestClassifier, SVC (gamma float and
#: "scale"), Pipeline(Nystroem, LinearSVC) (the default SVM) and Pipeline(StandardScaler,
#: LogisticRegression) (scikit-learn 1.9, skops 0.16) reports only the decision trees' Cython
#: ``Tree`` (rebuilt from arrays, no code). The SVMs and the pipelines need nothing beyond skops'
#: defaults (scikit-learn estimators, numpy arrays).
TRUSTED_SKOPS_TYPES: tuple[str, ...] = ("sklearn.tree._tree.Tree",)


class UnsafeModelFile(ValueError):
    """A model file that is refused: unknown format, untrusted content, or damaged."""


def save_model(model: Any, path: Path) -> Path:
    """Write ``model`` to ``path`` in the format its suffix names (``.skops``, written atomically,
    or ``.keras``)."""
    path = Path(path)
    if path.suffix == SKLEARN_SUFFIX:
        import skops.io as sio

        atomic_write(path, lambda tmp: sio.dump(model, tmp))
    elif path.suffix == KERAS_SUFFIX:
        atomic_write(path, lambda tmp: model.save(tmp), suffix=KERAS_SUFFIX)  # Keras insists on the suffix
    else:
        raise ValueError(f"cannot save a model as {path}: use {SKLEARN_SUFFIX} or {KERAS_SUFFIX}")
    return path


def load_model(path: Path) -> Any:
    """Read a model saved by `save_model`, never executing code from the file.

    Raises `UnsafeModelFile` naming the file for any other suffix, for a ``.skops`` file
    holding a type outside skops' defaults and `TRUSTED_SKOPS_TYPES`, for a Keras file that
    needs unsafe deserialization (a Lambda layer), and for a file that does not parse.
    """
    path = Path(path)
    if path.suffix == SKLEARN_SUFFIX:
        return _load_skops(path)
    if path.suffix == KERAS_SUFFIX:
        return _load_keras(path)
    raise UnsafeModelFile(
        f"refusing to load {path}: only {SKLEARN_SUFFIX} (skops) and {KERAS_SUFFIX} (Keras safe mode) model "
        "files are read; pickle-based formats (.joblib, .pkl) can run code when loaded"
    )


def _load_skops(path: Path) -> Any:
    import skops.io as sio

    try:
        untrusted = sorted(set(sio.get_untrusted_types(file=path)) - set(TRUSTED_SKOPS_TYPES))
    except Exception as exc:  # zipfile.BadZipFile, KeyError, JSON errors: not a skops file
        raise UnsafeModelFile(f"{path} is not a readable skops model file ({type(exc).__name__}: {exc})") from exc
    if untrusted:
        raise UnsafeModelFile(
            f"refusing to load {path}: it contains types outside the reviewed list "
            f"(tasks.models.persistence.TRUSTED_SKOPS_TYPES): {', '.join(untrusted)}"
        )
    try:
        return sio.load(path, trusted=list(TRUSTED_SKOPS_TYPES))
    except Exception as exc:
        raise UnsafeModelFile(f"{path} could not be loaded as a skops model ({type(exc).__name__}: {exc})") from exc


def _load_keras(path: Path) -> Any:
    import keras

    import tasks.models.training  # noqa: F401  registers the project's loss, which saved models name

    if not path.is_file():
        raise UnsafeModelFile(f"{path} does not exist or is not a file")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as exc:
        raise UnsafeModelFile(
            f"refusing to load {path} with Keras safe mode ({type(exc).__name__}: {str(exc)[:300]})"
        ) from exc
