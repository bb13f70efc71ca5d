"""JSON Schema → what Anthropic's structured outputs (``output_config.format``) take.

Anthropic constrains generation with the schema, and refuses a request whose schema holds
keywords it cannot enforce: numeric bounds (``minimum``, ``maximum``, ``multipleOf``…), string
lengths, array sizes other than ``minItems`` 0 or 1, and objects that allow more properties than
they list. A schema written for OpenAI (a pydantic model with ``Field(ge=1)``, say) would fail,
so it is rewritten the way Anthropic's own SDK does before sending: objects get
``additionalProperties: false``, ``oneOf`` becomes ``anyOf``, string formats outside Anthropic's
list are dropped, and every keyword that cannot be enforced moves into the ``description`` (as
``{minimum: 1}``), where the model can still read it.
"""

from __future__ import annotations

from typing import Any

STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)
# Kept as they are wherever they stand (the structural rest is handled one by one below).
_KEPT = frozenset({"type", "description", "title", "enum", "const", "$ref", "default"})


def for_anthropic(schema: Any) -> Any:
    if not isinstance(schema, dict):
        return schema
    rest = dict(schema)
    out: dict[str, Any] = {key: rest.pop(key) for key in _KEPT if key in rest}
    defs = rest.pop("$defs", None)
    if isinstance(defs, dict):
        out["$defs"] = {name: for_anthropic(sub) for name, sub in defs.items()}
    options = rest.pop("anyOf", None) or rest.pop("oneOf", None)
    if isinstance(options, list):
        out["anyOf"] = [for_anthropic(option) for option in options]
    members = rest.pop("allOf", None)
    if isinstance(members, list):
        out["allOf"] = [for_anthropic(member) for member in members]
    kind = out.get("type")
    kinds = kind if isinstance(kind, list) else [kind]
    if "object" in kinds or "properties" in rest:
        properties = rest.pop("properties", {})
        out["properties"] = {name: for_anthropic(sub) for name, sub in properties.items()}
        if "required" in rest:
            out["required"] = rest.pop("required")
        rest.pop("additionalProperties", None)
        out["additionalProperties"] = False
    if "array" in kinds or "items" in rest:
        if "items" in rest:
            out["items"] = for_anthropic(rest.pop("items"))
        if rest.get("minItems") in (0, 1):
            out["minItems"] = rest.pop("minItems")
    if "string" in kinds and rest.get("format") in STRING_FORMATS:
        out["format"] = rest.pop("format")
    if rest:  # what Anthropic cannot enforce: told to the model instead
        note = "{" + ", ".join(f"{key}: {value}" for key, value in rest.items()) + "}"
        description = out.get("description")
        out["description"] = f"{description}\n\n{note}" if description else note
    return out
