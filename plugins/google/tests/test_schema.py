"""JSON Schema → Gemini's schema subset: allowlisted keys only, meaning kept where it can be."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from lmrouter_google.schema import for_gemini

GEMINI_KEYS = {
    "type",
    "format",
    "title",
    "description",
    "nullable",
    "enum",
    "maxItems",
    "minItems",
    "properties",
    "required",
    "minProperties",
    "maxProperties",
    "minLength",
    "maxLength",
    "pattern",
    "example",
    "anyOf",
    "propertyOrdering",
    "default",
    "items",
    "minimum",
    "maximum",
}


def offending_keys(schema: Any, path: str = "") -> list[str]:
    """Keys Gemini's parser would reject, anywhere in a converted schema."""
    if not isinstance(schema, dict):
        return []
    bad = [f"{path}.{k}" for k in schema if k not in GEMINI_KEYS]
    for name, sub in (schema.get("properties") or {}).items():
        bad += offending_keys(sub, f"{path}.properties.{name}")
    if "items" in schema:
        bad += offending_keys(schema["items"], f"{path}.items")
    for i, sub in enumerate(schema.get("anyOf") or ()):
        bad += offending_keys(sub, f"{path}.anyOf[{i}]")
    return bad


def test_strips_unsupported_keys_recursively_but_keeps_property_names() -> None:
    schema = {
        "$schema": "http://json-schema.org/draft-07/schema#",
        "$id": "urn:x",
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "additionalProperties": {"type": "string", "minLength": 1},  # a property's *name*
            "tags": {
                "type": "array",
                "items": {"type": "string", "format": "uri", "examples": ["a"]},
                "uniqueItems": True,
                "maxItems": 5,
            },
            "where": {
                "type": "object",
                "properties": {"lat": {"type": "number", "exclusiveMinimum": -90}},
                "patternProperties": {"^x": {}},
                "propertyNames": {"pattern": "^[a-z]+$"},
            },
        },
        "required": ["tags", "ghost"],
    }
    assert for_gemini(schema) == {
        "type": "OBJECT",
        "properties": {
            "additionalProperties": {"type": "STRING", "minLength": 1},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "maxItems": 5},
            "where": {"type": "OBJECT", "properties": {"lat": {"type": "NUMBER"}}},
        },
        "required": ["tags"],  # only names that exist
    }


def test_required_names_that_are_not_strings_are_dropped() -> None:
    # found by hypothesis: an unhashable entry in `required` raised TypeError
    schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": [{}, "a", 3]}
    assert for_gemini(schema)["required"] == ["a"]


def test_nullable_unions_consts_and_enums() -> None:
    schema = {
        "type": "object",
        "properties": {
            "note": {"type": ["string", "null"], "description": "optional"},
            "either": {"type": ["string", "integer"]},
            "maybe": {"anyOf": [{"type": "integer", "format": "int64"}, {"type": "null"}]},
            "kind": {"const": "fixed"},
            "unit": {"enum": ["c", "f", None]},
            "level": {"type": "integer", "enum": [1, 2, 3]},
            "when": {"type": "string", "format": "date-time"},
            "one": {"oneOf": [{"type": "string"}, {"type": "boolean"}]},
        },
    }
    assert for_gemini(schema)["properties"] == {
        "note": {"type": "STRING", "nullable": True, "description": "optional"},
        "either": {"anyOf": [{"type": "STRING"}, {"type": "INTEGER"}]},
        "maybe": {"nullable": True, "type": "INTEGER", "format": "int64"},
        "kind": {"enum": ["fixed"], "type": "STRING"},
        "unit": {"nullable": True, "enum": ["c", "f"], "type": "STRING"},
        "level": {"type": "INTEGER"},  # Gemini enums are strings only
        "when": {"type": "STRING", "format": "date-time"},
        "one": {"anyOf": [{"type": "STRING"}, {"type": "BOOLEAN"}]},
    }


def test_refs_are_inlined_and_all_of_merged() -> None:
    schema = {
        "type": "object",
        "$defs": {
            "City": {"type": "object", "properties": {"name": {"type": "string"}}},
            "Node": {
                "type": "object",
                "properties": {"next": {"$ref": "#/$defs/Node"}, "v": {"type": "integer"}},
            },
        },
        "definitions": {"Id": {"type": "string", "pattern": "^[0-9]+$"}},
        "properties": {
            "city": {"$ref": "#/$defs/City", "description": "where"},
            "id": {"$ref": "#/definitions/Id"},
            "node": {"$ref": "#/$defs/Node"},
            "lost": {"$ref": "#/$defs/Missing"},
            "both": {
                "allOf": [
                    {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
                    {"properties": {"b": {"type": "number"}}, "required": ["b"]},
                ]
            },
        },
    }
    out = for_gemini(schema)
    props = out["properties"]
    assert props["city"] == {
        "description": "where",
        "type": "OBJECT",
        "properties": {"name": {"type": "STRING"}},
    }
    assert props["id"] == {"pattern": "^[0-9]+$", "type": "STRING"}
    assert props["lost"] == {"type": "OBJECT"}
    assert props["both"] == {
        "type": "OBJECT",
        "properties": {"a": {"type": "STRING"}, "b": {"type": "NUMBER"}},
        "required": ["a", "b"],
    }
    depth, node = 0, props["node"]
    while "properties" in node:  # a recursive type ends after a few levels
        node = node["properties"]["next"]
        depth += 1
    assert 2 <= depth <= 10 and node == {"type": "OBJECT"}
    assert not offending_keys(out)


def test_non_schemas() -> None:
    assert for_gemini(None) == {}
    assert for_gemini([1, 2]) == {}
    assert for_gemini({"type": "object", "properties": {"x": {}}}) == {
        "type": "OBJECT",
        "properties": {"x": {}},
    }


KEYWORDS = sorted(
    GEMINI_KEYS
    | {
        "additionalProperties",
        "$schema",
        "$ref",
        "$defs",
        "allOf",
        "oneOf",
        "const",
        "not",
        "if",
        "then",
        "else",
        "patternProperties",
        "exclusiveMinimum",
        "uniqueItems",
        "strict",
        "examples",
    }
)
LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.text(max_size=5),
    st.sampled_from(["string", "object", "array", "null", "integer", "#/$defs/a"]),
)
SCHEMAS = st.recursive(
    st.dictionaries(st.sampled_from(KEYWORDS), LEAF, max_size=4),
    lambda inner: st.dictionaries(
        st.sampled_from(KEYWORDS),
        st.one_of(
            LEAF,
            inner,
            st.lists(inner, max_size=3),
            st.dictionaries(st.text(max_size=4), inner, max_size=3),
        ),
        max_size=5,
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None)
@given(SCHEMAS)
def test_any_input_gives_only_keys_gemini_knows(schema: dict[str, Any]) -> None:
    out = for_gemini(schema)
    assert not offending_keys(out), out
    for kind in _types(out):
        assert kind in {"STRING", "NUMBER", "INTEGER", "BOOLEAN", "ARRAY", "OBJECT", "NULL"}


def _types(schema: Any) -> list[Any]:
    if not isinstance(schema, dict):
        return []
    found = [schema["type"]] if "type" in schema else []
    for sub in (schema.get("properties") or {}).values():
        found += _types(sub)
    found += _types(schema.get("items"))
    for sub in schema.get("anyOf") or ():
        found += _types(sub)
    return found
