"""Typed configs: dataclass <-> plain dict <-> YAML, plus dotted ``key.sub=value`` overrides.

A recipe is a YAML file whose sections fill the dataclasses below. A field whose
dataclass depends on a name (``model.family``) is marked with ``metadata={"registry": R,
"key": "family"}`` and resolved through that registry, so there is no if/elif on names.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any

import yaml

from asrforge.errors import ConfigError


def parse_value(text: str) -> Any:
    """Parse an override's right-hand side the way YAML would (``3`` -> int, ``[1,2]`` -> list)."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(tree: dict, overrides: list[str]) -> dict:
    """Set ``a.b.c=value`` entries in a nested dict (in place; returned for chaining)."""
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} must look like key.sub=value")
        key, _, raw = item.partition("=")
        parts = key.strip().split(".")
        node = tree
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"override {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = parse_value(raw)
    return tree


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check and gently convert a YAML value to the annotated type (int -> float, list -> tuple)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        errors = []
        for arg in args:
            try:
                return _coerce(value, arg, where)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0])
    if origin is typing.Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(f"{where} must be one of {list(typing.get_args(tp))}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        (inner, *_) = typing.get_args(tp) or (Any,)
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads "1e-3" as a string
        except ValueError:
            pass
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where} must be {tp.__name__}, got {value!r}")
    if tp is int and isinstance(value, bool):
        raise ConfigError(f"{where} must be int, got {value!r}")
    return value


def from_dict(cls: type, data: dict | None, where: str = "") -> Any:
    """Build dataclass ``cls`` from a nested dict, rejecting unknown keys with the allowed ones listed."""
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{where.rstrip('.') or 'config'} must be a section (mapping), got {data!r}")
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"unknown key(s) {', '.join(where + k for k in unknown)}; "
            f"allowed under {where.rstrip('.') or 'the top level'}: {', '.join(sorted(fields))}"
        )
    kwargs = {}
    for name, f in fields.items():
        if name not in data:
            if "registry" in f.metadata:  # default member of a registry-typed section
                kwargs[name] = _from_registry(f, {}, f"{where}{name}.")
            continue
        value = data[name]
        if "registry" in f.metadata:
            kwargs[name] = _from_registry(f, value, f"{where}{name}.")
        elif dataclasses.is_dataclass(hints[name]):
            kwargs[name] = from_dict(hints[name], value, f"{where}{name}.")
        else:
            kwargs[name] = _coerce(value, hints[name], f"{where}{name}")
    try:
        obj = cls(**kwargs)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"{where.rstrip('.') or 'config'}: {e}") from None
    return obj


def _registry_entry(f: dataclasses.Field, name: Any):
    """The entry ``name`` in the field's registry, or in the first of its registries that has it (a recipe's
    ``model`` section names a family trained from scratch or a pretrained one)."""
    registries = f.metadata["registry"]
    registries = registries if isinstance(registries, tuple) else (registries,)
    for registry in registries:
        if name in registry:
            return registry.get(name)
    if len(registries) == 1:
        return registries[0].get(name)    # its own message lists the choices
    allowed = ", ".join(sorted(n for r in registries for n in r.names()))
    raise ConfigError(f"unknown {registries[0].kind} {name!r}; choose one of: {allowed}")


def _from_registry(f: dataclasses.Field, value: Any, where: str) -> Any:
    key = f.metadata["key"]
    if value is not None and not isinstance(value, dict):
        raise ConfigError(f"{where.rstrip('.')} must be a section (mapping), got {value!r}")
    value = dict(value or {})
    name = value.get(key, f.metadata.get("default"))
    return from_dict(_registry_entry(f, name).config, value, where)


def fill_registry_defaults(obj: Any) -> None:
    """Give every registry-typed field left at ``None`` its registered default config (for configs built
    in Python rather than from a recipe, where :func:`from_dict` already does this)."""
    for f in dataclasses.fields(obj):
        if "registry" in f.metadata and getattr(obj, f.name) is None:
            setattr(obj, f.name, _registry_entry(f, f.metadata["default"]).config())


def to_dict(obj: Any) -> Any:
    """Dataclass -> plain nested dict/list (YAML/JSON-safe)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    return obj


def parse_yaml(text: str, source: str) -> dict:
    """A recipe's YAML text -> its tree of sections; ``source`` names it in errors."""
    try:
        tree = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {source} is not valid YAML: {e}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"recipe {source} must be a mapping of sections (data:, model:, train:, ...)")
    return tree
