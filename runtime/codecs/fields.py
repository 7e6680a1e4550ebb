"""Typed reads of client JSON for every translator (ingresses and provider request building).

A request body is parsed JSON, so any field may hold any JSON type. Translators read fields through
these accessors instead of trusting the shape: a wrong type becomes InvalidRequest (400, rendered in
the ingress's own error shape) naming the field's path (`messages[2].content[0].text`), never a
TypeError or AttributeError deep inside a translation (a plain-text 500).

Each accessor takes the containing object, the key and the container's path; `None` (JSON null) and a
missing key read as absent. Pure functions, no state.
"""

from __future__ import annotations

import math
from typing import Any

from runtime.errors import InvalidRequest

_KINDS = {
    type(None): "null",
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "an array",
    dict: "an object",
}


def kind_of(value: Any) -> str:
    """The JSON type of `value`, in words, for error messages."""
    return _KINDS.get(type(value), type(value).__name__)


def join(path: str, key: str | int) -> str:
    """The path of `key` inside `path`: `messages` + 2 -> `messages[2]`; `tools[0]` + `name` -> `tools[0].name`."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def invalid(path: str, expected: str, value: Any) -> InvalidRequest:
    return InvalidRequest(f"'{path}' must be {expected}, got {kind_of(value)}", param=path, code="invalid_type")


# -- values -----------------------------------------------------------------------------------------------------


def as_obj(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid(path, "an object", value)
    return value


def as_list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise invalid(path, "an array", value)
    return value


def as_str(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise invalid(path, "a string", value)
    return value


def as_int(value: Any, path: str, minimum: int | None = None, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(path, "an integer", value)
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        if minimum is not None and maximum is not None:
            bounds = f"from {minimum} to {maximum}"
        else:
            bounds = f"of at least {minimum}" if minimum is not None else f"of at most {maximum}"
        raise InvalidRequest(f"'{path}' must be an integer {bounds}", param=path, code="invalid_value")
    return value


def as_number(value: Any, path: str) -> int | float:
    """A finite JSON number (NaN, Infinity and overflowed literals such as 1e400 are refused)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise invalid(path, "a number", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise InvalidRequest(f"'{path}' must be a finite number", param=path, code="invalid_value")
    return value


def as_bool(value: Any, path: str) -> bool:
    if not isinstance(value, bool):
        raise invalid(path, "a boolean", value)
    return value


def objects(value: Any, path: str) -> list[dict[str, Any]]:
    """An array whose every item is an object."""
    items = as_list(value, path)
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise invalid(join(path, i), "an object", item)
    return items


def strings(value: Any, path: str) -> list[str]:
    """An array whose every item is a string."""
    items = as_list(value, path)
    for i, item in enumerate(items):
        if not isinstance(item, str):
            raise invalid(join(path, i), "a string", item)
    return items


# -- fields of an object (absent or null -> default) --------------------------------------------------------


def opt_obj(obj: dict[str, Any], key: str, path: str = "") -> dict[str, Any] | None:
    value = obj.get(key)
    return None if value is None else as_obj(value, join(path, key))


def opt_list(obj: dict[str, Any], key: str, path: str = "") -> list[Any]:
    """The array at `key`, or an empty list when absent or null."""
    value = obj.get(key)
    return [] if value is None else as_list(value, join(path, key))


def opt_objects(obj: dict[str, Any], key: str, path: str = "") -> list[dict[str, Any]]:
    value = obj.get(key)
    return [] if value is None else objects(value, join(path, key))


def opt_str(obj: dict[str, Any], key: str, path: str = "", default: str = "") -> str:
    value = obj.get(key)
    return default if value is None else as_str(value, join(path, key))


def maybe_str(obj: dict[str, Any], key: str, path: str = "") -> str | None:
    value = obj.get(key)
    return None if value is None else as_str(value, join(path, key))


def opt_int(
    obj: dict[str, Any], key: str, path: str = "", minimum: int | None = None, maximum: int | None = None
) -> int | None:
    value = obj.get(key)
    return None if value is None else as_int(value, join(path, key), minimum, maximum)


def opt_number(obj: dict[str, Any], key: str, path: str = "") -> int | float | None:
    value = obj.get(key)
    return None if value is None else as_number(value, join(path, key))


def opt_bool(obj: dict[str, Any], key: str, path: str = "") -> bool | None:
    value = obj.get(key)
    return None if value is None else as_bool(value, join(path, key))


def req_str(obj: dict[str, Any], key: str, path: str = "") -> str:
    value = obj.get(key)
    if value is None:
        where = join(path, key)
        raise InvalidRequest(f"'{where}' is required", param=where, code="missing_required_parameter")
    return as_str(value, join(path, key))


# Sampling fields whose values every translator copies to its provider: numbers, checked once.
NUMBER_FIELDS = ("temperature", "top_p", "presence_penalty", "frequency_penalty")
# OpenAI's documented maximum for `n`; every provider's is lower. The bound keeps a client from asking an
# adapter (or a test fake) to build billions of choices.
MAX_CHOICES = 128
# Above every embedding model's size (the largest are 3,072 today); the same reason as MAX_CHOICES.
MAX_DIMENSIONS = 16384
INTEGER_FIELDS: tuple[tuple[str, int | None, int | None], ...] = (
    ("top_k", None, None),
    ("n", 1, MAX_CHOICES),
    ("seed", None, None),
    ("max_tokens", None, None),
    ("max_completion_tokens", None, None),
)


def check_sampling(body: dict[str, Any], path: str = "") -> None:
    """Type-check the sampling fields of an internal (OpenAI-shaped) body: finite numbers, integers."""
    for name in NUMBER_FIELDS:
        opt_number(body, name, path)
    for name, minimum, maximum in INTEGER_FIELDS:
        opt_int(body, name, path, minimum, maximum)
