"""The one command-line builder of every entry point (`flows.full`, `flows.validate`,
`deployments.serve`): argparse generated from a pydantic model, so the CLI and the Prefect UI
form can never disagree about names, types, defaults or help text.

A field of a section (a nested model) is ``--section.field-name``; where the field's name is
unique across sections it is also ``--field-name`` (the flat spelling of earlier versions), and
``legacy`` maps other old flat names to fields. ``--help`` groups the flags by section.
"""

from __future__ import annotations

import argparse
import os
import sys
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)
#: Typed on the command line to set a nullable field to empty (None).
NONE_WORDS = frozenset({"none", "null", ""})
#: ...of a nullable path: not "", which is what an unset ``$DATA`` in ``--data-dir "$DATA"`` gives.
NONE_PATH_WORDS = NONE_WORDS - {""}


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is_optional) for ``X | None`` / ``Optional[X]``; the inner type without its
    ``Annotated`` validators (``Optional[NonEmptyPath]`` is a path on the command line)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return strip_annotated(args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return strip_annotated(annotation), False


def strip_annotated(annotation: Any) -> Any:
    """``Annotated[X, ...]`` -> ``X``: pydantic applies the validators, argparse needs the type."""
    return typing.get_args(annotation)[0] if typing.get_origin(annotation) is typing.Annotated else annotation


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The section type of a field, or None for a plain value."""
    inner, _ = unwrap_optional(annotation)
    return inner if isinstance(inner, type) and issubclass(inner, BaseModel) else None


def choices_of(annotation: Any) -> list[str] | None:
    """The allowed words of a Literal (None: any value)."""
    return [str(c) for c in typing.get_args(annotation)] if typing.get_origin(annotation) is Literal else None


def union_converter(words: list[str], number: type | None) -> Callable[[str], Any]:
    """A word of the union as it is, else a number when the union has one; anything else goes to
    pydantic as written, whose message says what the field takes (argparse would only say
    "invalid value")."""

    def value(text: str) -> Any:
        if text in words or number is None:
            return text
        try:
            return number(text)
        except ValueError:
            return text

    return value


def converter_for(annotation: Any, optional: bool) -> tuple[Callable[[str], Any], list[str] | None, bool]:
    """(converter, choices, is_list) for one field type; pydantic does the final validation."""
    is_list = typing.get_origin(annotation) is list
    inner = typing.get_args(annotation)[0] if is_list else annotation
    choices = choices_of(inner)
    if typing.get_origin(inner) in (typing.Union, types.UnionType):  # e.g. Literal["scale"] | float
        words = [w for arg in typing.get_args(inner) for w in (choices_of(arg) or [])]
        numeric = [arg for arg in typing.get_args(inner) if arg in (int, float)]
        base = union_converter(words, numeric[0] if numeric else None)
        choices = None
    elif choices is not None or inner not in (int, float):
        base = str  # paths too: pydantic makes the Path, after refusing "" (which Path() turns into ".")
    else:
        base = inner

    none_words = NONE_PATH_WORDS if inner is Path else NONE_WORDS

    def convert(text: str) -> Any:
        if optional and text.strip().lower() in none_words:
            return None
        return base(text)

    convert.__name__ = getattr(base, "__name__", "value")  # argparse names the type in its errors
    return convert, (None if optional else choices), is_list


def leaf_fields(model: type[BaseModel], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted name, pydantic field) of every plain value, depth first, sections in order."""
    leaves: list[tuple[str, Any]] = []
    for name, field in model.model_fields.items():
        nested = nested_model(field.annotation)
        if nested is not None:
            leaves += leaf_fields(nested, f"{prefix}{name}.")
        else:
            leaves.append((f"{prefix}{name}", field))
    return leaves


def flags_for(dest: str, unique_leaves: set[str], legacy: Mapping[str, str]) -> list[str]:
    """``--section.field-name``, then the flat ``--field-name`` where it is unambiguous, then legacy names."""
    *sections, leaf = dest.split(".")
    kebab = leaf.replace("_", "-")
    flags = ["--" + ".".join([*sections, kebab])]
    if sections and leaf in unique_leaves and leaf != "enabled":  # "--enabled" alone says nothing
        flags.append(f"--{kebab}")
    flags += [f"--{old.replace('_', '-')}" for old, new in legacy.items() if new == dest]
    return flags


def add_model_arguments(
    parser: argparse.ArgumentParser, model: type[BaseModel], legacy: Mapping[str, str] | None = None
) -> None:
    """One flag per field, grouped by section; bools get ``--x/--no-x``; lists take several values;
    a nullable field takes ``none`` for empty. Flags not given are absent from the namespace."""
    legacy = legacy or {}
    leaves = leaf_fields(model)
    names = [dest.rsplit(".", 1)[-1] for dest, _ in leaves]
    taken = set(model.model_fields) | set(legacy)
    unique = {n for n in names if names.count(n) == 1 and n not in taken}
    groups: dict[str, Any] = {}
    for dest, field in leaves:
        section = dest.rsplit(".", 1)[0] if "." in dest else ""
        if section not in groups:
            groups[section] = (
                parser
                if not section
                else parser.add_argument_group(section, model.model_fields[section.split(".")[0]].description)
            )
        add_field_argument(groups[section], dest, field, flags_for(dest, unique, legacy))


#: What a bool flag's value may be, as written on a command line or in a deployment's parameters.
BOOL_WORDS = {"true": True, "yes": True, "on": True, "1": True, "false": False, "no": False, "off": False, "0": False}


class BoolFlag(argparse.BooleanOptionalAction):
    """``--x`` / ``--no-x`` as usual, and ``--x true|false`` too (the spelling other tools and
    the docs use, e.g. ``--tracking.enabled false``)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: Any) -> None:
        super().__init__(option_strings, dest, **kwargs)
        self.nargs, self.metavar = "?", "true|false"

    def __call__(self, parser: argparse.ArgumentParser, namespace: Any, values: Any, option: str | None = None) -> None:
        negated = bool(option and option.startswith("--no-"))
        if values is None:
            setattr(namespace, self.dest, not negated)
            return
        word = str(values).strip().lower()
        if negated or word not in BOOL_WORDS:
            expected = "no value" if negated else f"no value or one of {', '.join(BOOL_WORDS)}"
            parser.error(f"argument {option}: got {values!r}, expected {expected}")
        setattr(namespace, self.dest, BOOL_WORDS[word])


class HelpFormatter(argparse.HelpFormatter):
    """Shows a bool flag as ``--x [true|false], --no-x`` (``--no-x`` takes no value)."""

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if isinstance(action, BoolFlag):
            return ", ".join(
                f"{flag} [true|false]" if not flag.startswith("--no-") else flag for flag in action.option_strings
            )
        return super()._format_action_invocation(action)


def add_field_argument(group: Any, dest: str, field: Any, flags: list[str]) -> None:
    """One field's flag(s) in its group."""
    default = None if field.is_required() else field.get_default(call_default_factory=True)
    inner, optional = unwrap_optional(field.annotation)
    shown = "empty" if default is None else (" ".join(map(str, default)) if isinstance(default, list) else default)
    help_text = f"{field.description or ''} ({'required' if field.is_required() else f'default: {shown}'})"
    help_text = help_text.replace("%", "%%")
    if inner is bool:
        group.add_argument(*flags, dest=dest, action=BoolFlag, default=argparse.SUPPRESS, help=help_text)
        return
    convert, choices, is_list = converter_for(inner, optional)
    metavar = None if choices else dest.rsplit(".", 1)[-1].upper()
    group.add_argument(
        *flags,
        dest=dest,
        type=convert,
        choices=choices,
        nargs="*" if is_list else None,
        default=argparse.SUPPRESS,
        help=help_text,
        metavar=metavar,
    )


def nest_values(flat: Mapping[str, Any]) -> dict[str, Any]:
    """``{"a.b": 1}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = nested
        for parent in parents:
            node = node.setdefault(parent, {})
        node[leaf] = value
    return nested


def build_parser(
    model: type[BaseModel], prog: str, description: str, legacy: Mapping[str, str] | None = None
) -> argparse.ArgumentParser:
    """The argparse parser of an entry point whose parameters are ``model``."""
    parser = argparse.ArgumentParser(
        prog=prog, description=description, allow_abbrev=False, formatter_class=HelpFormatter
    )
    add_model_arguments(parser, model, legacy)
    return parser


def parse_model(
    model: type[M], argv: list[str] | None, description: str, prog: str, legacy: Mapping[str, str] | None = None
) -> M:
    """Parse argv into the model; a bad value exits with argparse's usage message (code 2)."""
    parser = build_parser(model, prog, description, legacy)
    namespace = parser.parse_args(argv)
    try:
        return model(**nest_values(vars(namespace)))
    except ValidationError as exc:
        flags = {action.dest: "/".join(action.option_strings) for action in parser._actions}
        parser.exit(2, f"{prog}: error: {describe_errors(exc, flags)}\n")
    raise AssertionError("unreachable")


def describe_errors(exc: ValidationError, flags: Mapping[str, str]) -> str:
    """One ``--flag: reason`` per flag: the errors of a list's items or a union's members that
    name the same flag are joined, so each refused value reads as one sentence."""
    by_flag: dict[str, list[str]] = {}
    for error in exc.errors():
        messages = by_flag.setdefault(flag_of(error["loc"], flags), [])
        if error["msg"] not in messages:
            messages.append(error["msg"])
    return "; ".join(f"{flag}: {' or '.join(messages)}" for flag, messages in by_flag.items())


def flag_of(loc: tuple[Any, ...], flags: Mapping[str, str]) -> str:
    """The flag(s) a pydantic error location was set by (the deepest field that has a flag)."""
    parts = [str(p) for p in loc]
    for end in range(len(parts), 0, -1):
        dest = ".".join(parts[:end])
        if dest in flags:
            return flags[dest]
    return "--" + ".".join(parts).replace("_", "-")


def fail(message: str, code: int = 1) -> typing.NoReturn:
    """Print one readable sentence to stderr and exit non-zero."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(code)


def quiet_environment() -> None:
    """Offline, quiet defaults for Prefect, Great Expectations and TensorFlow; user settings win."""
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
