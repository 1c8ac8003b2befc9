"""Run a module with TensorFlow made unimportable, to prove a code path does not need it.

``python -m benchmarks.no_tensorflow flows.full [flow flags]`` runs the pipeline as
``python -m flows.full`` would, except that any ``import tensorflow`` raises ImportError; with
``KERAS_BACKEND=jax`` that is the GPU machine's situation (docs/measurements.md) on a machine that has
TensorFlow installed. At exit it reports whether TensorFlow was imported anyway.

The block is an import hook, not ``sys.modules["tensorflow"] = None``: Keras asks
``"tensorflow" in sys.modules`` to decide whether it runs inside a TF graph, and a ``None`` entry
there sends it into TensorFlow code paths that then fail.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import runpy
import sys
from collections.abc import Sequence


class TensorFlowBlocker(importlib.abc.MetaPathFinder):
    """An import hook that refuses ``tensorflow`` and its submodules."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: object = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname.split(".")[0] == "tensorflow":
            raise ImportError(f"{fullname} is blocked: this run must not need TensorFlow")
        return None


def block_tensorflow() -> None:
    """Make ``import tensorflow`` fail from now on in this process (idempotent)."""
    if "tensorflow" in sys.modules:
        raise RuntimeError("TensorFlow is already imported; block it before anything imports it")
    if not any(isinstance(finder, TensorFlowBlocker) for finder in sys.meta_path):
        sys.meta_path.insert(0, TensorFlowBlocker())


def tensorflow_imported() -> bool:
    """Whether any TensorFlow module made it into this process."""
    return any(name.split(".")[0] == "tensorflow" for name in sys.modules)


def main(argv: list[str]) -> int:
    """Run module ``argv[0]`` as ``__main__`` with ``argv[1:]`` as its arguments."""
    if not argv:
        print("usage: python -m benchmarks.no_tensorflow MODULE [ARGS...]", file=sys.stderr)
        return 2
    block_tensorflow()
    sys.argv = list(argv)
    code: int = 0
    try:
        runpy.run_module(argv[0], run_name="__main__", alter_sys=True)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    print(f"TensorFlow imported: {'yes' if tensorflow_imported() else 'no'}", file=sys.stderr)
    return code if not tensorflow_imported() else (code or 1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
