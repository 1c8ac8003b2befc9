"""Build an argparse command line from a pydantic parameter model, so the CLI and the Prefect UI
form can never disagree about names, types, defaults or help text."""

from __future__ import annotations

import argparse
import sys
import types
import typing
from pathlib import Path
from typing import Any, Callable, Literal, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


def _unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is_optional) for ``X | None`` / ``Optional[X]``."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
    return annotation, False


def _parser_for(annotation: Any) -> tuple[Callable[[str], Any], list[str] | None, bool]:
    """(converter, choices, is_list) for one field type."""
    inner, _ = _unwrap_optional(annotation)
    is_list = typing.get_origin(inner) is list
    if is_list:
        inner = typing.get_args(inner)[0]
    if typing.get_origin(inner) is Literal:
        choices = [str(c) for c in typing.get_args(inner)]
        return str, choices, is_list
    if inner in (int, float, Path, str):
        return inner, None, is_list
    return str, None, is_list


def _nested_model(annotation: Any) -> type[BaseModel] | None:
    inner, _ = _unwrap_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def add_model_arguments(parser: argparse.ArgumentParser, model: type[BaseModel], prefix: str = "") -> None:
    """One ``--kebab-case`` flag per field; bools get ``--x/--no-x``; lists take several values.

    Fields of a nested model (e.g. the validation settings) become flags of their own, without
    a prefix, so that ``--max-bad-image-fraction 0.02`` sets ``validation.max_bad_image_fraction``.
    """
    for name, field in model.model_fields.items():
        dest = f"{prefix}{name}"
        nested = _nested_model(field.annotation)
        if nested is not None:
            group = parser.add_argument_group(f"{name} ({field.description or nested.__name__})")
            add_model_arguments(group, nested, prefix=f"{dest}.")  # type: ignore[arg-type]
            continue
        flag = "--" + name.replace("_", "-")
        default = field.get_default(call_default_factory=True)
        help_text = f"{field.description or ''} (default: {default})"
        if _unwrap_optional(field.annotation)[0] is bool:
            parser.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
            continue
        convert, choices, is_list = _parser_for(field.annotation)
        parser.add_argument(
            flag, dest=dest, type=convert, choices=choices, nargs="*" if is_list else None,
            default=None, help=help_text, metavar=None if choices else name.upper(),
        )


def nest_values(flat: dict[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}`` for the given (non-None) values."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        if value is None:
            continue
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def parse_model(model: type[M], argv: list[str] | None, description: str, prog: str) -> M:
    """Parse argv into the model; a bad value exits with argparse's usage message (code 2)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_model_arguments(parser, model)
    namespace = parser.parse_args(argv)
    try:
        return model(**nest_values(vars(namespace)))
    except ValidationError as exc:
        problems = "; ".join(f"--{str(e['loc'][-1]).replace('_', '-')}: {e['msg']}" for e in exc.errors())
        parser.exit(2, f"{prog}: error: {problems}\n")
    raise AssertionError("unreachable")


def fail(message: str, code: int = 1) -> typing.NoReturn:
    """Print one readable sentence to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def quiet_environment() -> None:
    """Offline, quiet defaults for Prefect, Great Expectations and TensorFlow; user settings win."""
    import os

    defaults = {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLBACKEND": "Agg",
    }
    for key, value in defaults.items():
        os.environ.setdefault(key, value)
