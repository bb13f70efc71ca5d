"""JSON Schema → the schema dialect of Gemini's ``functionDeclarations[].parameters``.

Gemini takes "a select subset of an OpenAPI 3.0 schema object" (its ``Schema`` message). Its JSON
parser rejects any other key with ``400 INVALID_ARGUMENT: Unknown name "additionalProperties" …
Cannot find field`` — the whole request fails, whatever the key's value. So the conversion keeps an
allowlist (the fields of ``google.ai.generativelanguage.v1beta.Schema``) rather than a blocklist,
and rewrites what has a faithful equivalent:

- ``$ref`` to ``#/$defs/…`` or ``#/definitions/…`` is inlined (a recursive reference becomes a
  bare ``OBJECT`` after a few levels); ``allOf`` members are merged; ``oneOf`` becomes ``anyOf``;
- ``type: [X, "null"]`` and ``anyOf`` with a ``{"type": "null"}`` member become ``nullable``;
  several non-null types become ``anyOf``;
- ``const`` (a string) becomes a one-value ``enum``; an ``enum`` with non-string values is dropped
  (Gemini enums are strings only);
- ``format`` survives only where Gemini accepts it (``enum`` and ``date-time`` for strings;
  ``float``/``double``/``int32``/``int64`` for numbers);
- ``required`` keeps only names present in ``properties``.

Dropped without replacement: ``additionalProperties``, ``patternProperties``, ``propertyNames``,
``$schema``, ``$id``, ``$comment``, ``examples``, ``exclusiveMinimum``/``exclusiveMaximum``,
``multipleOf``, ``uniqueItems``, ``contains``, ``if``/``then``/``else``, ``not``, ``readOnly``,
``writeOnly``, ``deprecated``, ``strict`` and everything else outside the allowlist. Property
*names* are data, never filtered.
"""

from __future__ import annotations

from typing import Any

# The fields of Gemini's Schema message (v1beta).
_KEPT = frozenset(
    {
        "description",
        "title",
        "nullable",
        "maxItems",
        "minItems",
        "minProperties",
        "maxProperties",
        "minLength",
        "maxLength",
        "pattern",
        "minimum",
        "maximum",
        "default",
        "example",
    }
)
_TYPES = {
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
    "array": "ARRAY",
    "object": "OBJECT",
    "null": "NULL",
}
_FORMATS = {
    "STRING": frozenset({"enum", "date-time"}),
    "NUMBER": frozenset({"float", "double"}),
    "INTEGER": frozenset({"int32", "int64"}),
}
_MAX_REF_DEPTH = 8


def for_gemini(schema: Any) -> dict[str, Any]:
    """The Gemini form of a JSON Schema (an empty dict for anything that is not an object)."""
    if not isinstance(schema, dict):
        return {}
    defs: dict[str, Any] = {}
    for key in ("definitions", "$defs"):
        if isinstance(schema.get(key), dict):
            defs.update({f"#/{key}/{name}": sub for name, sub in schema[key].items()})
    return _Converter(defs).convert(schema, 0)


def has_properties(schema: dict[str, Any]) -> bool:
    """Gemini rejects ``parameters`` of type OBJECT without properties; such a tool sends none."""
    return bool(schema.get("properties")) or schema.get("type") not in (None, "OBJECT")


class _Converter:
    def __init__(self, defs: dict[str, Any]) -> None:
        self.defs = defs

    def convert(self, schema: Any, depth: int) -> dict[str, Any]:
        if not isinstance(schema, dict):
            return {}
        schema = self._resolve(schema, depth)
        if schema is None:
            return {"type": "OBJECT"}
        out: dict[str, Any] = {k: v for k, v in schema.items() if k in _KEPT}
        self._type(schema, out, depth)
        self._enum(schema, out)
        self._children(schema, out, depth)
        fmt = schema.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(out.get("type", ""), ()):
            out["format"] = fmt
        return out

    def _resolve(self, schema: dict[str, Any], depth: int) -> dict[str, Any] | None:
        """Inline ``$ref`` and merge ``allOf`` into one schema (sibling keys win)."""
        ref = schema.get("$ref")
        if isinstance(ref, str):
            target = self.defs.get(ref)
            if target is None or depth >= _MAX_REF_DEPTH:
                return None
            resolved = self._resolve(target, depth + 1)
            if resolved is None:
                return None
            schema = {**resolved, **{k: v for k, v in schema.items() if k != "$ref"}}
        members = schema.get("allOf")
        if isinstance(members, list):
            merged: dict[str, Any] = {}
            for member in members:
                if isinstance(member, dict):
                    resolved = self._resolve(member, depth + 1)
                    if resolved is not None:
                        _merge(merged, resolved)
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            _merge(merged, rest)
            schema = merged
        return schema

    def _type(self, schema: dict[str, Any], out: dict[str, Any], depth: int) -> None:
        kind = schema.get("type")
        kinds = kind if isinstance(kind, list) else [kind] if isinstance(kind, str) else []
        names = [_TYPES[k] for k in kinds if isinstance(k, str) and k in _TYPES]
        if "NULL" in names and len(names) > 1:
            names.remove("NULL")
            out["nullable"] = True
        if len(names) == 1:
            out["type"] = names[0]
        elif len(names) > 1:
            out["anyOf"] = [{"type": name} for name in names]
        elif "properties" in schema:
            out["type"] = "OBJECT"
        elif "items" in schema:
            out["type"] = "ARRAY"

    def _enum(self, schema: dict[str, Any], out: dict[str, Any]) -> None:
        values = schema.get("enum")
        if "const" in schema:
            values = [schema["const"]]
        if isinstance(values, list):
            strings = [v for v in values if isinstance(v, str)]
            if None in values and strings:
                out["nullable"] = True
            if strings and len(strings) + values.count(None) == len(values):
                out["enum"] = strings
                out.setdefault("type", "STRING")

    def _children(self, schema: dict[str, Any], out: dict[str, Any], depth: int) -> None:
        properties = schema.get("properties")
        if isinstance(properties, dict) and properties:
            out["properties"] = {
                name: self.convert(sub, depth + 1) for name, sub in properties.items()
            }
            required = schema.get("required")
            if isinstance(required, list):
                kept = [n for n in required if isinstance(n, str) and n in properties]
                if kept:
                    out["required"] = kept
            ordering = schema.get("propertyOrdering")
            if isinstance(ordering, list) and all(isinstance(n, str) for n in ordering):
                out["propertyOrdering"] = ordering
        items = schema.get("items")
        if isinstance(items, list):  # tuple validation: the first item's schema is the best fit
            items = items[0] if items else None
        if isinstance(items, dict):
            out["items"] = self.convert(items, depth + 1)
        options = schema.get("anyOf", schema.get("oneOf"))
        if isinstance(options, list):
            kept_options = []
            for option in options:
                if isinstance(option, dict) and option.get("type") == "null":
                    out["nullable"] = True
                elif isinstance(option, dict):
                    kept_options.append(self.convert(option, depth + 1))
            if len(kept_options) == 1:
                single = kept_options[0]
                out.update({k: v for k, v in single.items() if k not in out or k == "type"})
            elif kept_options:
                out["anyOf"] = kept_options


def _merge(into: dict[str, Any], other: dict[str, Any]) -> None:
    """``allOf`` semantics, approximately: properties and required lists add up."""
    for key, value in other.items():
        if key == "properties" and isinstance(value, dict):
            into["properties"] = {**into.get("properties", {}), **value}
        elif key == "required" and isinstance(value, list):
            into["required"] = [*into.get("required", []), *value]
        else:
            into[key] = value
