"""Typed, frozen configuration objects and the one clean validation error.

Every file the user writes (scenario, strategy preset, run config) is parsed into frozen dataclasses by
:func:`from_dict`, which refuses unknown keys and wrong types with a :class:`ConfigError` that names the
file, the key and what is allowed. The CLI turns that error into one line and exit status 2.
"""

from __future__ import annotations

import dataclasses
import tomllib
import types
from pathlib import Path
from typing import Any, Literal, Mapping, TypeVar, Union, get_args, get_origin, get_type_hints

T = TypeVar("T")


class ConfigError(ValueError):
    """Bad user input: names the file (if any), the key (dotted path) and what is allowed."""

    def __init__(self, message: str, *, key: str = "", file: str | Path | None = None) -> None:
        self.file = str(file) if file is not None else None
        self.key = key
        self.detail = message
        super().__init__(self._render())

    def _render(self) -> str:
        parts = [p for p in (self.file, self.key) if p]
        return ": ".join([*parts, self.detail])

    def in_file(self, file: str | Path) -> ConfigError:
        """The same error, attributed to ``file`` (when it names no file yet)."""
        if self.file is not None:
            return self
        return ConfigError(self.detail, key=self.key, file=file)

    def under(self, prefix: str) -> ConfigError:
        """The same error with its key nested under ``prefix``."""
        key = f"{prefix}.{self.key}" if self.key else prefix
        return ConfigError(self.detail, key=key, file=self.file)


def read_toml(path: str | Path) -> dict[str, Any]:
    """Parse a TOML file; a missing file or a syntax error becomes a ConfigError naming it."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError("no such file", file=p)
    try:
        with p.open("rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"not valid TOML ({e})", file=p) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read ({e})", file=p) from None


def _describe(tp: Any) -> str:
    origin = get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in get_args(tp))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in get_args(tp))
    if origin is tuple:
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_describe(args[0])}"
        return "a list [" + ", ".join(_describe(a) for a in args) + "]"
    if dataclasses.is_dataclass(tp):
        return "a table"
    if tp is type(None):
        return "nothing"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and convert lists to tuples, tables to dataclasses."""
    origin = get_origin(tp)
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"expected a table, got {value!r}", key=key)
        return from_dict(tp, value, key=key)
    if origin is Literal:
        if value not in get_args(tp):
            raise ConfigError(f"{value!r} is not allowed; choose {_describe(tp)}", key=key)
        return value
    if origin in (Union, types.UnionType):
        for arg in get_args(tp):
            try:
                return _convert(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{value!r} is not {_describe(tp)}", key=key)
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"expected {_describe(tp)}, got {value!r}", key=key)
        args = get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{key}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"expected {_describe(tp)}, got {value!r}", key=key)
        return tuple(_convert(v, a, f"{key}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
    if tp is type(None):
        if value is not None:
            raise ConfigError(f"expected nothing, got {value!r}", key=key)
        return None
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"expected true or false, got {value!r}", key=key)
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"expected a whole number, got {value!r}", key=key)
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"expected a number, got {value!r}", key=key)
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"expected a string, got {value!r}", key=key)
        return value
    raise TypeError(f"unsupported config annotation {tp!r} at {key}")  # a programming error, not user input


def from_dict(cls: type[T], data: Mapping[str, Any], *, key: str = "") -> T:
    """Build the frozen dataclass ``cls`` from ``data``: unknown keys and wrong types are ConfigErrors."""
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}  # type: ignore[arg-type]
    prefix = f"{key}." if key else ""
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key; allowed keys here: {', '.join(sorted(fields))}", key=prefix + unknown[0]
        )
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(value, hints[name], prefix + name)
    missing = [
        n
        for n, f in fields.items()
        if n not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING  # type: ignore[misc]
    ]
    if missing:
        raise ConfigError("required key is missing", key=prefix + missing[0])
    obj = cls(**kwargs)
    check = getattr(obj, "validate", None)
    if check is not None:
        try:
            check()
        except ConfigError as e:
            raise (e.under(key) if key else e) from None
    return obj


OMIT_DEFAULT = {"omit_default": True}
"""Field metadata: :func:`to_dict` leaves the field out while it holds its default, so adding such a key to a
config keeps the written form (and a sweep trial's fingerprint) of every existing config unchanged."""


def to_dict(obj: Any, *, applicable: bool = False) -> Any:
    """A dataclass (nested) as plain dicts/lists, ready for TOML or JSON (``OMIT_DEFAULT`` fields at their
    default left out). ``applicable``: also leave out, while at their defaults, the fields that a dataclass's
    ``unused_fields()`` names (e.g. the synthetic-only sizes of an mnist5k ``[data]``); :func:`from_dict`
    still gives the same object back."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        unused = getattr(obj, "unused_fields", None)
        skip = unused() if applicable and unused is not None else frozenset()
        return {
            f.name: to_dict(getattr(obj, f.name), applicable=applicable)
            for f in dataclasses.fields(obj)
            if not ((f.metadata.get("omit_default") or f.name in skip) and getattr(obj, f.name) == f.default)
        }
    if isinstance(obj, (list, tuple)):
        return [to_dict(v, applicable=applicable) for v in obj]
    if isinstance(obj, Mapping):
        return {k: to_dict(v, applicable=applicable) for k, v in obj.items()}
    return obj


def replace_from(obj: T, overrides: Mapping[str, Any], *, key: str = "") -> T:
    """``obj`` with some fields overridden from user data, validated like :func:`from_dict`."""
    merged = {**to_dict(obj), **overrides}
    return from_dict(type(obj), merged, key=key)


def check(cond: bool, key: str, message: str) -> None:
    """Raise a ConfigError for ``key`` unless ``cond`` holds (used by ``validate`` methods)."""
    if not cond:
        raise ConfigError(message, key=key)


__all__ = [
    "OMIT_DEFAULT",
    "ConfigError",
    "check",
    "from_dict",
    "read_toml",
    "replace_from",
    "to_dict",
]


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if v is None:
        raise ValueError("TOML has no null; leave the key out")
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def dump_toml(data: Mapping[str, Any], _prefix: str = "") -> str:
    """A small TOML writer for config data: scalars, lists, nested tables and arrays of tables."""
    lines: list[str] = []
    tables: list[tuple[str, Mapping[str, Any]]] = []
    arrays: list[tuple[str, list[Mapping[str, Any]]]] = []
    for k, v in data.items():
        if v is None:
            continue
        if isinstance(v, Mapping):
            tables.append((k, v))
        elif isinstance(v, (list, tuple)) and v and all(isinstance(x, Mapping) for x in v):
            arrays.append((k, list(v)))
        else:
            lines.append(f"{k} = {_toml_value(v)}")
    out = "\n".join(lines) + ("\n" if lines else "")
    for k, v in tables:
        name = f"{_prefix}{k}"
        out += f"\n[{name}]\n" + dump_toml(v, f"{name}.")
    for k, items in arrays:
        name = f"{_prefix}{k}"
        for item in items:
            out += f"\n[[{name}]]\n" + dump_toml(item, f"{name}.")
    return out
