"""Which config.json fields exist: ours, Go Bifrost's (that we accept with a warning), or typos (errors).

A typo must never be silently dropped: `network_confg` or `baseurl` would send traffic to the default
upstream with the user's key. So every object the loader reads is checked against the fields this
runtime implements; a field Go Bifrost's schema knows but we do not implement is accepted with one
warning line (it has no effect here), and anything else stops the load with the field path and the
closest known names. Go's field sets come from `go_schema_data.py` (generated from Go's schema at
build time), so nothing outside the package is read at run time.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

from runtime.config.go_schema_data import SCHEMA

_DEFS: Mapping[str, Any] = SCHEMA.get("$defs", {})


def _resolve(node: Any) -> Any:
    while isinstance(node, dict) and "$ref" in node:
        node = _DEFS.get(node["$ref"].rsplit("/", 1)[-1], {})
    return node


def properties(node: Any) -> dict[str, Any]:
    """Every property an object schema may have (through $ref, allOf, anyOf, oneOf)."""
    node = _resolve(node)
    if not isinstance(node, dict):
        return {}
    out: dict[str, Any] = dict(node.get("properties", {}))
    for combinator in ("allOf", "anyOf", "oneOf"):
        for branch in node.get(combinator, ()):
            for name, sub in properties(branch).items():
                out.setdefault(name, sub)
    return out


def is_closed(node: Any) -> bool:
    """Whether the schema forbids fields it does not list (additionalProperties: false, in every branch)."""
    node = _resolve(node)
    if not isinstance(node, dict):
        return False
    if node.get("additionalProperties") is False:
        return True
    branches = [b for c in ("allOf", "anyOf", "oneOf") for b in node.get(c, ())]
    return bool(branches) and all(is_closed(b) for b in branches)


def _union(*names: str) -> frozenset[str]:
    return frozenset(f for name in names for f in properties(_DEFS.get(name, {})))


def _sub(def_name: str, field: str) -> frozenset[str]:
    return frozenset(properties(properties(_DEFS.get(def_name, {})).get(field, {})))


# -- Go Bifrost's field sets -------------------------------------------------------------------------
GO_TOP = frozenset(properties(SCHEMA))
GO_CLIENT = frozenset(properties(properties(SCHEMA).get("client", {})))
GO_PROVIDER_NAMES = frozenset(properties(properties(SCHEMA).get("providers", {})))
_PROVIDER_DEFS = (
    "provider",
    "provider_with_bedrock_config",
    "provider_with_vllm_config",
    "provider_with_azure_config",
    "provider_with_vertex_config",
)
_KEY_DEFS = ("base_key", "bedrock_key", "vllm_key", "azure_key", "vertex_key")
# One node whose properties are those of every provider (key) variant, for checking inside Go-only fields.
PROVIDER_SCHEMA = {"allOf": [{"$ref": f"#/$defs/{name}"} for name in _PROVIDER_DEFS]}
KEY_SCHEMA = {"allOf": [{"$ref": f"#/$defs/{name}"} for name in _KEY_DEFS]}
GO_PROVIDER = _union(*_PROVIDER_DEFS)
GO_KEY = _union(*_KEY_DEFS)
GO_NETWORK = _union("network_config")
GO_LANE = _union("concurrency_config")
GO_CUSTOM = _union("custom_provider_config")
GO_AZURE_KEY = _sub("azure_key", "azure_key_config")
GO_BEDROCK_KEY = _sub("bedrock_key", "bedrock_key_config")
GO_VERTEX_KEY = _sub("vertex_key", "vertex_key_config")


def schema_for(path: Iterable[str]) -> Any:
    """The schema node for a path of field names from the top (None when the schema does not say)."""
    node: Any = SCHEMA
    for name in path:
        node = properties(node).get(name)
        if node is None:
            return None
    return node


# -- checking ----------------------------------------------------------------------------------------
def suggest(name: str, known: Iterable[str]) -> str:
    """` (did you mean 'x'?)` for the closest known names, or '' when nothing is close."""
    candidates = sorted(set(known))
    close = difflib.get_close_matches(name, candidates, n=2, cutoff=0.6)
    if not close:
        # Separators dropped or doubled (`baseurl`, `base__url`) are the commonest typos.
        squashed = name.replace("_", "").replace("-", "").lower()
        close = [c for c in candidates if c.replace("_", "").lower() == squashed][:1]
    if not close:
        return ""
    return " (did you mean " + " or ".join(f"'{c}'" for c in close) + "?)"


def join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def check_fields(
    data: Mapping[str, Any],
    path: str,
    ours: Iterable[str],
    go: Iterable[str],
    warnings: list[str] | None,
    go_schema: Any = None,
) -> None:
    """Raise for a field neither we nor Go know; warn once for each Go field we do not implement.

    `go_schema` (Go's schema node for this object) lets a Go-only block be checked inside too, so a
    typo within, say, `proxy_config` is reported too (see check_go_block)."""
    from runtime.config.load import ConfigError  # load imports this module

    ours_set = frozenset(ours)
    go_set = frozenset(go)
    for name in data:
        if not isinstance(name, str):
            continue
        if name in ours_set:
            continue
        where = join(path, name)
        if name in go_set:
            if warnings is not None:
                warnings.append(f"{where}: Go Bifrost setting not implemented in this version; it has no effect")
            if go_schema is not None:
                check_go_block(data[name], where, properties(go_schema).get(name), warnings)
            continue
        raise ConfigError(where, f"unknown field{suggest(name, ours_set | go_set)}")


def check_go_block(value: Any, path: str, node: Any, warnings: list[str] | None, depth: int = 0) -> None:
    """Unknown fields inside a Go-only block, which has no effect here anyway.

    Go Bifrost's own example configs use fields its schema does not list (the schema lags its code,
    and Go ignores unknown JSON fields), so refusing them would reject configs Go starts with. They are
    reported as one warning each instead, with the closest names Go's schema knows: never silent."""
    node = _resolve(node)
    if node is None or warnings is None or depth > 32:
        return
    if isinstance(value, list):
        items = node.get("items") if isinstance(node, dict) else None
        if items is not None:
            for i, item in enumerate(value):
                check_go_block(item, f"{path}[{i}]", items, warnings, depth + 1)
        return
    if not isinstance(value, dict):
        return
    props = properties(node)
    closed = is_closed(node)
    extra = _resolve(node.get("additionalProperties")) if isinstance(node, dict) else None
    for name, sub in value.items():
        where = join(path, str(name))
        if name in props:
            check_go_block(sub, where, props[name], warnings, depth + 1)
        elif closed:
            warnings.append(f"{where}: not in Go Bifrost's schema either{suggest(str(name), props)}; it has no effect")
        elif isinstance(extra, dict):
            check_go_block(sub, where, extra, warnings, depth + 1)
