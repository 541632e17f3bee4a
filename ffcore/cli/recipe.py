"""Command-line options and YAML recipe files generated from the fields of a config dataclass.

`ffcore train` and `ffcore distill` offer one option per field of `TrainConfig` (and of
`DistillConfig`), made here from the dataclass: the flag is the field's name with dashes
unless a `FieldOption` says otherwise, and the text is read as the type the field declares
(bool: `--x` / `--no-x`; `X | None`: also "none"; a tuple: several values; a dict:
KEY=VALUE items). An absent option leaves no attribute (`argparse.SUPPRESS`), so a handler
sees only what the user gave. A recipe file (`--config run.yaml`) holds the same fields;
every value, from the file or from the command line, goes through `coerce`, which checks it
against the declared type and names where a bad one came from.

The dataclasses are imported by the callers; this module imports only the standard library
(PyYAML when a file is read or written).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from ffcore.cli.common import CommandError

NONE_WORDS = ("none", "null")


@dataclass(frozen=True)
class FieldOption:
    """How one field appears on the command line, where its name and type alone do not say."""
    help: str | None = None
    flag: str | None = None                       # default: --<field with dashes>
    choices: Sequence[str] | None = None
    parse: Callable[[str], Any] | None = None     # reads the text of a field whose type is ambiguous (bool | str)
    metavar: str | None = None


def _named(name: str, function: Callable[[str], Any]) -> Callable[[str], Any]:
    function.__name__ = name          # argparse says "invalid <name> value: 'x'"
    return function


def _union_members(hint) -> tuple | None:
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return None


def text_parser(hint, field: str) -> Callable[[str], Any]:
    """The converter of a command-line word to a scalar of type `hint` (int, float, str, their
    optional forms, `str | int`); LookupError for a type that needs a `FieldOption.parse`."""
    if hint in (int, float, str):
        return hint
    members = _union_members(hint)
    if members is None:
        raise LookupError(f"field {field} is declared {hint}: give it a FieldOption with `parse`")
    others = tuple(m for m in members if m is not type(None))
    if len(others) < len(members):              # X | None: "none" is None
        inner = text_parser(others[0] if len(others) == 1 else typing.Union[others], field)
        name = getattr(inner, "__name__", "value")
        return _named(f"{name} or none", lambda text: None if text.lower() in NONE_WORDS else inner(text))
    if set(others) == {str, int}:               # a number or a name (val_scale: 640 or "vga")
        return _named("int or name", lambda text: int(text) if text.isdigit() else text)
    raise LookupError(f"field {field} is declared {hint}: give it a FieldOption with `parse`")


def key_value(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` -> (key, value), the value read as a YAML scalar (48 -> int, 0.1 -> float, true, none)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    import yaml

    return key, (None if value.lower() in NONE_WORDS else yaml.safe_load(value))


def add_field_options(parser, cls, options: dict[str, FieldOption], skip: Sequence[str] = ()) -> list[str]:
    """One option per field of the dataclass `cls` (except `skip`); returns the fields given options."""
    hints = typing.get_type_hints(cls)
    added = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        spec = options.get(f.name, FieldOption())
        flag = spec.flag or "--" + f.name.replace("_", "-")
        hint = hints[f.name]
        metavar = spec.metavar or _metavar(hint, f.name)
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": spec.help}
        if spec.parse is not None:
            kwargs.update(type=spec.parse, metavar=metavar)
        elif hint is bool:
            kwargs.update(action=argparse.BooleanOptionalAction)
        elif typing.get_origin(hint) is tuple:
            members = typing.get_args(hint)
            variadic = len(members) == 2 and members[1] is Ellipsis
            kwargs.update(nargs="*" if variadic else len(members), type=text_parser(members[0], f.name),
                          metavar=spec.metavar or members[0].__name__.upper())
        elif hint is dict or typing.get_origin(hint) is dict:
            kwargs.update(nargs="*", type=key_value, metavar="KEY=VALUE")
        else:
            kwargs.update(type=text_parser(hint, f.name), choices=spec.choices,
                          metavar=None if spec.choices else metavar)
        parser.add_argument(flag, **kwargs)
        added.append(f.name)
    return added


def _metavar(hint, field: str) -> str:
    members = [m for m in (_union_members(hint) or (hint,)) if m is not type(None)]
    if len(members) == 1 and members[0] in (int, float):
        return {int: "N", float: "X"}[members[0]]
    return field.upper()


def describe(hint) -> str:
    """A type as a user reads it: "int", "float or none", "list of int"."""
    members = _union_members(hint)
    if members is not None:
        return " or ".join("none" if m is type(None) else describe(m) for m in members)
    if typing.get_origin(hint) is tuple:
        members = typing.get_args(hint)
        if len(members) == 2 and members[1] is Ellipsis:
            return f"a list of {describe(members[0])}"
        return f"a list of {len(members)} {describe(members[0])}"
    if hint is dict or typing.get_origin(hint) is dict:
        return "a mapping"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}.get(hint, str(hint))


def coerce(value: Any, hint, where: str) -> Any:
    """`value` as the type `hint` declares, or CommandError naming `where` (a file and key, or an option).

    Accepts what YAML or the command-line parsing gives: a list for a tuple, (key, value)
    pairs or a mapping for a dict, an int for a float; a number written 1e-3 (PyYAML reads
    exponents without a dot as strings) for a float."""
    members = _union_members(hint)
    if members is not None:
        if value is None and type(None) in members:
            return None
        # exact kinds first: True must not become 1, nor 320 the string "320"
        for member in sorted((m for m in members if m is not type(None)), key=lambda m: m is float):
            try:
                return coerce(value, member, where)
            except CommandError:
                continue
        raise CommandError(f"{where}: expected {describe(hint)}, got {value!r}")
    if typing.get_origin(hint) is tuple:
        if not isinstance(value, (list, tuple)):
            raise CommandError(f"{where}: expected {describe(hint)}, got {value!r}")
        members = typing.get_args(hint)
        if len(members) == 2 and members[1] is Ellipsis:
            return tuple(coerce(v, members[0], where) for v in value)
        if len(value) != len(members):
            raise CommandError(f"{where}: expected {describe(hint)}, got {value!r}")
        return tuple(coerce(v, m, where) for v, m in zip(value, members))
    if hint is dict or typing.get_origin(hint) is dict:
        if isinstance(value, list) and all(isinstance(v, tuple) and len(v) == 2 for v in value):
            return dict(value)
        if isinstance(value, dict):
            return dict(value)
        raise CommandError(f"{where}: expected {describe(hint)}, got {value!r}")
    if hint is bool and isinstance(value, bool):
        return value
    if hint is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if hint is float and not isinstance(value, bool):
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
    if hint is str and isinstance(value, str):
        return value
    raise CommandError(f"{where}: expected {describe(hint)}, got {value!r}")


def coerce_fields(values: dict[str, Any], cls, where: Callable[[str], str]) -> dict[str, Any]:
    """Every value of `values` (keys: fields of `cls`) coerced to its field's type."""
    hints = typing.get_type_hints(cls)
    return {key: coerce(value, hints[key], where(key)) for key, value in values.items()}


def read_recipe_file(path: str | Path, allowed: Sequence[str]) -> dict[str, Any]:
    """The mapping of a YAML recipe file; CommandError for an unreadable file or a key not in `allowed`."""
    import yaml

    path = Path(path)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except OSError as exc:
        raise CommandError(f"cannot read the recipe file {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise CommandError(f"{path} is not valid YAML: {' '.join(str(exc).split())}") from None
    if not isinstance(values, dict):
        raise CommandError(f"{path}: expected a mapping of recipe fields (key: value lines), "
                           f"got {type(values).__name__}")
    unknown = sorted(str(k) for k in values if k not in allowed)
    if unknown:
        raise CommandError(f"{path}: unknown key(s) {', '.join(unknown)}; the recipe keys are: "
                           f"{', '.join(allowed)}")
    return values


def _plain(value: Any) -> Any:
    # YAML's safe dumper has no tuples
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def write_recipe_file(path: str | Path, values: dict[str, Any], header: str) -> Path:
    """Write `values` as a YAML recipe (readable back by `read_recipe_file`), `header` as a comment."""
    import yaml

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    comment = "".join(f"# {line}\n" for line in header.splitlines())
    path.write_text(comment + yaml.safe_dump(_plain(values), sort_keys=False, default_flow_style=None))
    return path
