"""Typed CRD specs: frozen dataclasses whose fields carry their OpenAPI constraints.

One definition serves both sides: :func:`openapi` turns a spec class into the OpenAPI v3 schema
(with CEL ``x-kubernetes-validations``) that the CRD generator writes to ``deploy/crds/``, and
:func:`parse` turns an object's ``spec`` mapping into the frozen dataclass the code runs with,
collecting every error with its path (``spec.weights.fragmentation: must be >= 0``). CEL rules run
only on the API server; :func:`parse` checks the structural constraints (types, enums, ranges,
required fields, unknown fields) so a bad object never reaches a running component.

Supported field types: ``str``, ``int``, ``float``, ``bool``, ``X | None``, ``tuple[X, ...]``,
``dict[str, str]`` and nested spec dataclasses. No I/O here.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

#: Marks a field without a default that must be present.
REQUIRED: Any = dataclasses.MISSING


@dataclass(frozen=True)
class Rule:
    """A CEL rule (``x-kubernetes-validations`` entry) evaluated by the API server."""

    rule: str
    message: str
    #: JSON path of the field the error is reported on (relative to the object the rule sits on).
    field_path: str | None = None
    reason: str | None = None

    def to_openapi(self) -> dict[str, str]:
        out = {"rule": self.rule, "message": self.message}
        if self.field_path:
            out["fieldPath"] = self.field_path
        if self.reason:
            out["reason"] = self.reason
        return out


def prop(default: Any = REQUIRED, doc: str = "", *, name: str | None = None, minimum: float | None = None,
         maximum: float | None = None, exclusive_minimum: bool = False, enum: tuple[str, ...] | None = None,
         pattern: str | None = None, max_length: int | None = None, min_length: int | None = None,
         max_items: int | None = None, min_items: int | None = None, list_type: str | None = None,
         list_map_keys: tuple[str, ...] | None = None, max_properties: int | None = None,
         rules: tuple[Rule, ...] = (), fmt: str | None = None, show_default: bool = True,
         item_max_length: int | None = None) -> Any:
    """A dataclass field with its schema constraints; ``name`` is the camelCase key (default: derived)."""
    given = {"doc": doc, "name": name, "minimum": minimum, "maximum": maximum,
             "exclusive_minimum": exclusive_minimum, "enum": enum, "pattern": pattern, "max_length": max_length,
             "min_length": min_length, "max_items": max_items, "min_items": min_items, "list_type": list_type,
             "list_map_keys": list_map_keys, "max_properties": max_properties, "rules": rules, "fmt": fmt,
             "item_max_length": item_max_length}
    meta: dict[str, Any] = {k: v for k, v in given.items() if v is not None and v is not False and v != ()}
    if not show_default:
        meta["show_default"] = False
    if default is REQUIRED:
        return field(metadata=meta)
    if isinstance(default, (list, dict)):
        raise TypeError("mutable defaults: use a tuple or a default_factory")
    if dataclasses.is_dataclass(default):
        return field(default_factory=lambda: default, metadata=meta)
    return field(default=default, metadata=meta)


def camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def key_of(f: dataclasses.Field) -> str:
    return f.metadata.get("name") or camel(f.name)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _has_default(f: dataclasses.Field) -> bool:
    return f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING


def _default(f: dataclasses.Field) -> Any:
    return f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]


# ---- OpenAPI ---------------------------------------------------------------------------------

def _type_schema(tp: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(tp):
        return openapi(tp)
    if tp is str:
        return {"type": "string"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer", "format": "int64"}
    if tp is float:
        return {"type": "number"}
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return {"type": "array", "items": _type_schema(args[0])}
    if origin is dict and args == (str, str):
        return {"type": "object", "additionalProperties": {"type": "string"}}
    raise TypeError(f"unsupported spec field type {tp!r}")


def _to_json(value: Any) -> Any:
    if dataclasses.is_dataclass(value):
        return {key_of(f): _to_json(getattr(value, f.name)) for f in dataclasses.fields(value)
                if getattr(value, f.name) is not None}
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    return value


_SCHEMA_KEYS = (("minimum", "minimum"), ("maximum", "maximum"), ("enum", "enum"), ("pattern", "pattern"),
                ("max_length", "maxLength"), ("min_length", "minLength"), ("max_items", "maxItems"),
                ("min_items", "minItems"), ("list_type", "x-kubernetes-list-type"),
                ("list_map_keys", "x-kubernetes-list-map-keys"), ("max_properties", "maxProperties"),
                ("fmt", "format"))


def _field_schema(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    inner, _ = _unwrap_optional(tp)
    schema = _type_schema(inner)
    meta = f.metadata
    doc = meta.get("doc", "")
    if _has_default(f) and meta.get("show_default", True) and _default(f) is not None \
            and not dataclasses.is_dataclass(_default(f)):
        schema["default"] = _to_json(_default(f))
    for attr, key in _SCHEMA_KEYS:
        if attr in meta:
            value = meta[attr]
            schema[key] = list(value) if isinstance(value, tuple) else value
    if meta.get("exclusive_minimum"):
        schema["exclusiveMinimum"] = True
    if "item_max_length" in meta:
        inner_schema = schema.get("items") or schema.get("additionalProperties")
        inner_schema["maxLength"] = meta["item_max_length"]
    if meta.get("rules"):
        schema.setdefault("x-kubernetes-validations", []).extend(r.to_openapi() for r in meta["rules"])
    if doc:
        schema.pop("description", None)
        schema = {"description": doc, **schema}
    return schema


def openapi(cls: type) -> dict[str, Any]:
    """The OpenAPI v3 object schema of a spec dataclass (fields, required keys, CEL rules)."""
    hints = typing.get_type_hints(cls)
    properties: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        properties[key_of(f)] = _field_schema(f, hints[f.name])
        if not _has_default(f):
            required.append(key_of(f))
    schema: dict[str, Any] = {"type": "object"}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    schema["properties"] = properties
    if required:
        schema["required"] = required
    rules: tuple[Rule, ...] = getattr(cls, "__cel__", ())
    if rules:
        schema["x-kubernetes-validations"] = [r.to_openapi() for r in rules]
    return schema


# ---- parsing ---------------------------------------------------------------------------------

class SpecError(ValueError):
    """A spec does not fit its type; ``errors`` lists every problem as ``path: what is wrong``."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("; ".join(errors))
        self.errors = errors


def _check_constraints(value: Any, meta: dict, path: str, errors: list[str]) -> None:
    if "enum" in meta and value not in meta["enum"]:
        errors.append(f"{path}: must be one of {', '.join(meta['enum'])} (got {value!r})")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in meta:
            low = meta["minimum"]
            if value < low or (meta.get("exclusive_minimum") and value == low):
                errors.append(f"{path}: must be {'>' if meta.get('exclusive_minimum') else '>='} {low}")
        if "maximum" in meta and value > meta["maximum"]:
            errors.append(f"{path}: must be <= {meta['maximum']}")
    if isinstance(value, str):
        if "pattern" in meta and not re.search(meta["pattern"], value):
            errors.append(f"{path}: {value!r} does not match {meta['pattern']}")
        if "max_length" in meta and len(value) > meta["max_length"]:
            errors.append(f"{path}: longer than {meta['max_length']} characters")
        if "min_length" in meta and len(value) < meta["min_length"]:
            errors.append(f"{path}: shorter than {meta['min_length']} characters")
    if isinstance(value, tuple):
        if "max_items" in meta and len(value) > meta["max_items"]:
            errors.append(f"{path}: more than {meta['max_items']} items")
        if "min_items" in meta and len(value) < meta["min_items"]:
            errors.append(f"{path}: fewer than {meta['min_items']} items")


def _parse_value(tp: Any, value: Any, path: str, errors: list[str]) -> Any:
    if dataclasses.is_dataclass(tp):
        return _parse_object(tp, value, path, errors)
    if tp is str:
        if isinstance(value, str):
            return value
        errors.append(f"{path}: must be a string")
        return None
    if tp is bool:
        if isinstance(value, bool):
            return value
        errors.append(f"{path}: must be true or false")
        return None
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        errors.append(f"{path}: must be an integer")
        return None
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        errors.append(f"{path}: must be a number")
        return None
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        if not isinstance(value, list):
            errors.append(f"{path}: must be a list")
            return ()
        return tuple(_parse_value(args[0], item, f"{path}[{i}]", errors) for i, item in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            errors.append(f"{path}: must be a mapping of strings")
            return {}
        return dict(value)
    raise TypeError(f"unsupported spec field type {tp!r}")


def _parse_object(cls: type, data: Any, path: str, errors: list[str]) -> Any:
    if not isinstance(data, dict):
        errors.append(f"{path or 'spec'}: must be a mapping")
        data = {}
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    known = set()
    for f in dataclasses.fields(cls):
        key = key_of(f)
        known.add(key)
        where = f"{path}.{key}" if path else key
        if key not in data or data[key] is None:
            if not _has_default(f):
                errors.append(f"{where}: required")
            continue
        inner, _ = _unwrap_optional(hints[f.name])
        value = _parse_value(inner, data[key], where, errors)
        if value is not None:
            _check_constraints(value, f.metadata, where, errors)
            values[f.name] = value
    for key in data:
        if key not in known:
            errors.append(f"{path}.{key}: unknown field" if path else f"{key}: unknown field")
    if any(not _has_default(f) and f.name not in values for f in dataclasses.fields(cls)):
        return None
    try:
        return cls(**values)
    except (TypeError, ValueError) as err:
        errors.append(f"{path or 'spec'}: {err}")
        return None


def parse(cls: type, data: Any, path: str = "spec") -> Any:
    """``data`` (a CRD object's spec) as an instance of ``cls``; raises :class:`SpecError` with every error."""
    errors: list[str] = []
    result = _parse_object(cls, data, path, errors)
    if errors or result is None:
        raise SpecError(errors or [f"{path}: invalid"])
    return result


def to_json(value: Any) -> Any:
    """The camelCase JSON form of a spec dataclass (None fields left out)."""
    return _to_json(value)


__all__ = ["REQUIRED", "Rule", "SpecError", "camel", "openapi", "parse", "prop", "to_json"]
