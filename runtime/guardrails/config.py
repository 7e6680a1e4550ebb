"""config.json `guardrails_config` (Go Bifrost's block) -> GuardrailsConfig, checked with field paths.

    "guardrails_config": {
      "guardrail_providers": [{"id": 1, "provider_name": "pii", "policy_name": "cards", "enabled": true,
                               "timeout": 5, "config": {"entities": ["credit_card"], "action": "redact"}}],
      "guardrail_rules": [{"id": 1, "name": "mask-pii", "enabled": true, "cel_expression": "true",
                           "apply_to": "both", "sampling_rate": 100, "timeout": 5, "provider_config_ids": [1]}]}

Every field of Go's schema is implemented. A provider's `config` holds its kind's fields (checked by the
kind's builder, runtime/guardrails/kinds.py) plus the shared `action` (Go's regex provider calls it
`mode`) and `failure_policy`. A Go provider kind we lack is a warning and that provider is skipped.
CEL expressions are compiled here, and run once against an activation of empty values, so a syntax error
or an unknown name (`request.provder`) is a ConfigError at load, not a failing request.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from runtime.guardrails.kinds import GO_ONLY, KINDS
from runtime.guardrails.types import (
    ACTIONS,
    APPLY_TO,
    BOTH,
    FAIL_CLOSED,
    FAILURE_POLICIES,
    GuardrailsConfig,
    ProviderSettings,
    RuleSettings,
)

PATH = "guardrails_config"
TOP_FIELDS = frozenset({"guardrail_providers", "guardrail_rules"})
PROVIDER_FIELDS = frozenset({"id", "provider_name", "policy_name", "enabled", "timeout", "config"})
RULE_FIELDS = frozenset(
    {
        "id",
        "name",
        "description",
        "enabled",
        "cel_expression",
        "apply_to",
        "sampling_rate",
        "timeout",
        "provider_config_ids",
    }
)
SHARED_CONFIG_FIELDS = ("action", "mode", "failure_policy")

# What CEL sees (docs/guardrails.md): `request.<field>` for each of these, `stage`, and `findings`.
REQUEST_FIELDS: Mapping[str, Any] = MappingProxyType(
    {
        "model": "",  # as routed: the primary target's model ("gpt-4o"), else as asked
        "model_requested": "",  # as the client wrote it (an alias, a group, "openai/gpt-4o")
        "provider": "",  # the primary target's provider ("openai")
        "providers": [],  # every target's provider, fallbacks included
        "virtual_key": "",  # the governing virtual key's id
        "virtual_key_name": "",
        "team": "",  # its team's id
        "team_name": "",
        "customer": "",  # its customer's id (directly or through the team)
        "headers": {},  # lower-cased names; credentials (authorization, API-key headers, cookies) removed
        "messages": [],  # [{"role", "content"}]: content is the message's text
        "endpoint": "",  # "chat" | "completions" | "embeddings" | "responses" | ...
        "ingress": "",  # "openai" | "anthropic" | "genai" | "responses"
        "stream": False,
    }
)
SCALAR_FIELDS = frozenset(k for k, v in REQUEST_FIELDS.items() if isinstance(v, (str, bool)))
_REQUEST_NAME = re.compile(r"\brequest\s*(?:\.\s*([A-Za-z_]\w*)|\[\s*['\"]([A-Za-z_]\w*)['\"]\s*\])")
_FINDINGS = re.compile(r"\bfindings\b")
_TRUE = frozenset({"true", "(true)"})


def empty_activation() -> dict[str, Any]:
    return {
        "request": {
            k: (list(v) if isinstance(v, list) else dict(v) if isinstance(v, dict) else v)
            for k, v in REQUEST_FIELDS.items()
        },
        "stage": "input",
        "findings": [],
    }


def compile_rule(expression: str, path: str) -> tuple[Any, bool, frozenset[str]]:
    """(program or None for "true", uses_findings, request fields read). Raises ConfigError."""
    from runtime.config.load import ConfigError

    text = expression.strip()
    if not text:
        raise ConfigError(path, 'is empty: write a CEL expression ("true" applies the rule to every request)')
    names = {a or b for a, b in _REQUEST_NAME.findall(text)}
    bare_request = len(re.findall(r"\brequest\b", text)) > len(_REQUEST_NAME.findall(text))
    fields = frozenset(REQUEST_FIELDS) if bare_request else frozenset(names)
    unknown = sorted(fields - set(REQUEST_FIELDS))
    if unknown:
        raise ConfigError(path, f"request.{unknown[0]} is not a field CEL sees; known: {', '.join(REQUEST_FIELDS)}")
    uses_findings = bool(_FINDINGS.search(text))
    if text.lower() in _TRUE:
        return None, False, frozenset()
    import cel

    try:
        program = cel.compile(text)
    except Exception as exc:  # the binding raises ValueError with the parser's message
        raise ConfigError(path, f"not a valid CEL expression: {_first_line(exc)}") from None
    try:
        result = program.execute(empty_activation())
    except Exception as exc:
        # A name CEL does not know, or a constant regex that does not compile, fails on every request: an
        # error now. Anything else may depend on the request (a header absent from the empty activation:
        # `request.headers['x']` raises KeyError here); at run time such a rule does not apply and is counted.
        message = _first_line(exc)
        if "Undefined variable" in message or "not a valid regex" in message:
            raise ConfigError(path, f"cannot be evaluated: {message}") from None
        return program, uses_findings, fields
    if not isinstance(result, bool):
        raise ConfigError(path, f"must evaluate to true or false, got {type(result).__name__}")
    return program, uses_findings, fields


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]


def parse_guardrails(value: Any, warnings: list[str]) -> GuardrailsConfig | None:
    """The checked block, or None when absent. Raises runtime.config.load.ConfigError with field paths."""
    from runtime.config import fields as config_fields
    from runtime.config.load import ConfigError, _kind_words, _type_name

    if value is None:
        return None
    if not isinstance(value, dict):
        raise ConfigError(PATH, f"must be an object, got {_type_name(value)}")
    config_fields.check_fields(value, PATH, TOP_FIELDS, (), warnings)

    def listed(key: str) -> list[Any]:
        items = value.get(key)
        if items is None:
            return []
        if not isinstance(items, list):
            raise ConfigError(f"{PATH}.{key}", f"must be a list of objects, got {_type_name(items)}")
        return items

    def typed(item: dict[str, Any], key: str, kinds: tuple[type, ...], path: str, default: Any) -> Any:
        v = item.get(key)
        if v is None:
            return default
        if (isinstance(v, bool) and bool not in kinds) or not isinstance(v, kinds):
            raise ConfigError(f"{path}.{key}", f"must be {_kind_words(kinds)}, got {_type_name(v)}")
        return v

    providers: dict[int, ProviderSettings] = {}
    for i, item in enumerate(listed("guardrail_providers")):
        path = f"{PATH}.guardrail_providers[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, f"must be an object, got {_type_name(item)}")
        config_fields.check_fields(item, path, PROVIDER_FIELDS, (), warnings)
        pid = _id(item, path, providers)
        name = typed(item, "provider_name", (str,), path, "")
        if not name:
            raise ConfigError(f"{path}.provider_name", f"is required: one of {', '.join(KINDS)}")
        enabled = typed(item, "enabled", (bool,), path, True)
        kind = KINDS.get(name)
        if kind is None:
            if name in GO_ONLY:
                warnings.append(f"{path}: Go Bifrost guardrail provider '{name}' is not implemented here; skipped")
                continue
            raise ConfigError(
                f"{path}.provider_name",
                f"unknown guardrail provider '{name}'{config_fields.suggest(name, KINDS)}; known: {', '.join(KINDS)}",
            )
        timeout = typed(item, "timeout", (int, float), path, kind.default_timeout_s)
        if not 0 < timeout <= 600:  # also refuses NaN (config.json may hold it): every check would time out
            raise ConfigError(f"{path}.timeout", f"must be between 0 and 600 seconds, got {timeout}")
        config = typed(item, "config", (dict,), path, {})
        shared = {k: config[k] for k in SHARED_CONFIG_FIELDS if k in config}
        own = {k: v for k, v in config.items() if k not in SHARED_CONFIG_FIELDS}
        action = shared.get("action", shared.get("mode", kind.default_action))
        if "action" in shared and "mode" in shared and shared["action"] != shared["mode"]:
            raise ConfigError(f"{path}.config.mode", "disagrees with config.action: give one of them")
        if action not in ACTIONS:
            raise ConfigError(f"{path}.config.action", f"must be one of {', '.join(ACTIONS)}, got {action!r}")
        policy = shared.get("failure_policy", FAIL_CLOSED)
        if policy not in FAILURE_POLICIES:
            raise ConfigError(
                f"{path}.config.failure_policy", f"must be one of {', '.join(FAILURE_POLICIES)}, got {policy!r}"
            )
        policy_name = typed(item, "policy_name", (str,), path, "") or name
        build = kind.builder()
        if kind.remote:  # remote detectors name their policy in their errors and findings ("webhook dlp: timeout")
            detector = build(own, f"{path}.config", warnings, float(timeout), policy=policy_name)
        else:
            detector = build(own, f"{path}.config", warnings, float(timeout))
        providers[pid] = ProviderSettings(
            id=pid,
            provider_name=name,
            policy_name=policy_name,
            enabled=enabled,
            action=action,
            failure_policy=policy,
            timeout_s=float(timeout),
            detector=detector,
            config=MappingProxyType(dict(config)),
        )

    rules: list[RuleSettings] = []
    names: set[str] = set()
    seen_ids: dict[int, Any] = {}
    skipped = {
        item.get("id")
        for item in listed("guardrail_providers")
        if isinstance(item, dict) and item.get("provider_name") in GO_ONLY
    }
    for i, item in enumerate(listed("guardrail_rules")):
        path = f"{PATH}.guardrail_rules[{i}]"
        if not isinstance(item, dict):
            raise ConfigError(path, f"must be an object, got {_type_name(item)}")
        config_fields.check_fields(item, path, RULE_FIELDS, (), warnings)
        rid = _id(item, path, seen_ids)
        seen_ids[rid] = True
        name = typed(item, "name", (str,), path, "")
        if not name.strip():
            raise ConfigError(f"{path}.name", "is required: the name errors, log rows and metrics show")
        if len(name) > 128:
            raise ConfigError(f"{path}.name", "is longer than 128 characters")
        if name in names:
            raise ConfigError(f"{path}.name", f"'{name}' is already the name of another rule")
        names.add(name)
        apply_to = typed(item, "apply_to", (str,), path, BOTH)
        if apply_to not in APPLY_TO:
            raise ConfigError(f"{path}.apply_to", f"must be one of {', '.join(APPLY_TO)}, got {apply_to!r}")
        rate = typed(item, "sampling_rate", (int,), path, 100)
        if not 0 <= rate <= 100:
            raise ConfigError(f"{path}.sampling_rate", f"must be a percentage from 0 to 100, got {rate}")
        timeout = typed(item, "timeout", (int, float), path, None)
        if timeout is not None and not 0 < timeout <= 600:  # NaN included
            raise ConfigError(f"{path}.timeout", f"must be between 0 and 600 seconds, got {timeout}")
        ids = typed(item, "provider_config_ids", (list,), path, [])
        for j, pid in enumerate(ids):
            if isinstance(pid, bool) or not isinstance(pid, int):
                raise ConfigError(f"{path}.provider_config_ids[{j}]", f"must be an integer, got {_type_name(pid)}")
            if pid not in providers and pid not in skipped:
                raise ConfigError(f"{path}.provider_config_ids[{j}]", f"no guardrail provider has id {pid}")
        expression = typed(item, "cel_expression", (str,), path, "true")
        program, uses_findings, request_fields = compile_rule(expression, f"{path}.cel_expression")
        rules.append(
            RuleSettings(
                id=rid,
                name=name,
                description=typed(item, "description", (str,), path, ""),
                enabled=typed(item, "enabled", (bool,), path, True),
                cel_expression=expression,
                apply_to=apply_to,
                sampling_rate=rate,
                timeout_s=None if timeout is None else float(timeout),
                provider_ids=tuple(pid for pid in ids if pid in providers),
                program=program,
                uses_findings=uses_findings,
                request_fields=request_fields,
            )
        )
    return GuardrailsConfig(MappingProxyType(providers), tuple(rules), MappingProxyType(dict(value)))


def rebuild(raw: dict[str, Any]) -> GuardrailsConfig | None:
    """GuardrailsConfig from its (already checked) block: how a pickled config is restored."""
    return parse_guardrails(raw, [])


def _id(item: Mapping[str, Any], path: str, seen: Mapping[int, Any]) -> int:
    from runtime.config.load import ConfigError, _type_name

    value = item.get("id")
    if value is None:
        raise ConfigError(f"{path}.id", "is required: rules name providers by id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{path}.id", f"must be an integer, got {_type_name(value)}")
    if value in seen:
        raise ConfigError(f"{path}.id", f"{value} is already the id of another entry")
    return value
