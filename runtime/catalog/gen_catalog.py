"""Regenerate the shipped model catalog (`models.json`) from LiteLLM's price list. Run by hand:

    python -m runtime.catalog.gen_catalog /work/shared/reference/pricing/model_prices_and_context_window.json

It is never run at start-up or at request time: the gateway reads only the derived file in this folder.
Prices are facts; the source file is MIT-licensed (Copyright (c) 2023 Berri AI) and its notice is kept
beside the derived file in `models_NOTICE.txt`.

What the derived file holds, per model, keyed by OUR `provider/model` names (the provider names of
runtime/providers/registry.py; LiteLLM's `litellm_provider` values are mapped in `PROVIDERS`, and a
provider we have no adapter for keeps LiteLLM's name so a custom provider of that name still finds it):

- prices in US dollars per token: `input`, `output`, `cache_read`, `cache_write`; per-token tiers that
  apply when the prompt is over a threshold (`tiers`: [[threshold, input, output, cache_read,
  cache_write], ...]); per image / per second / per audio token prices where LiteLLM gives them;
- `context_window` (max input tokens), `max_output`, `mode` (chat, embedding, ...), `capabilities`
  (LiteLLM's `supports_*` flags that are true, without the prefix) and `deprecation_date`.

Everything else (batch, priority and flex prices, regions, rate limits, ...) is dropped.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
OUT = HERE / "models.json"
NOTICE = HERE / "models_NOTICE.txt"

# LiteLLM's `litellm_provider` -> our provider name (runtime/providers/registry.py). Not listed: kept as is.
PROVIDERS = {
    "openai": "openai",
    "text-completion-openai": "openai",
    "azure": "azure",
    "azure_text": "azure",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex_ai": "vertex",  # and every "vertex_ai-*" family (vertex_ai-anthropic_models, ...)
    "bedrock": "bedrock",
    "bedrock_converse": "bedrock",
    "cohere": "cohere",
    "cohere_chat": "cohere",
    "groq": "groq",
    "mistral": "mistral",
    "together_ai": "together",
    "fireworks_ai": "fireworks",
    "fireworks_ai-embedding-models": "fireworks",
    "deepseek": "deepseek",
    "xai": "xai",
    "cerebras": "cerebras",
    "perplexity": "perplexity",
    "ollama": "ollama",
    "text-completion-codestral": "codestral",
}
# When two LiteLLM entries name the same provider/model, the one from the API our adapter speaks wins
# (the Bedrock adapter uses Converse; Cohere's v2 chat).
PREFERRED = frozenset({"bedrock_converse", "cohere_chat"})

PRICES = {  # LiteLLM field -> our field (US dollars)
    "input_cost_per_token": "input",
    "output_cost_per_token": "output",
    "cache_read_input_token_cost": "cache_read",
    "cache_creation_input_token_cost": "cache_write",
    "input_cost_per_image": "input_per_image",
    "output_cost_per_image": "output_per_image",
    "input_cost_per_audio_token": "input_per_audio_token",
    "output_cost_per_audio_token": "output_per_audio_token",
    "input_cost_per_audio_per_second": "input_per_audio_second",
    "input_cost_per_second": "input_per_second",
    "output_cost_per_second": "output_per_second",
    "input_cost_per_video_per_second": "input_per_video_second",
}
_TIER = re.compile(r"^(input_cost_per_token|output_cost_per_token|cache_read_input_token_cost|"
                   r"cache_creation_input_token_cost)_above_(\d+)k_tokens$")  # fmt: skip
_TIER_SLOT = {
    "input_cost_per_token": 1,
    "output_cost_per_token": 2,
    "cache_read_input_token_cost": 3,
    "cache_creation_input_token_cost": 4,
}
CAPABILITIES = (
    "function_calling",
    "parallel_function_calling",
    "tool_choice",
    "vision",
    "pdf_input",
    "audio_input",
    "audio_output",
    "video_input",
    "prompt_caching",
    "reasoning",
    "response_schema",
    "system_messages",
    "web_search",
    "computer_use",
)


def our_provider(litellm_provider: str) -> str:
    if litellm_provider in PROVIDERS:
        return PROVIDERS[litellm_provider]
    if litellm_provider.startswith("vertex_ai-"):
        return "vertex"
    return litellm_provider.removeprefix("text-completion-")


def our_model(key: str, litellm_provider: str, provider: str) -> str:
    """LiteLLM's key without its routing prefix (`gemini/gemini-2.5-flash` -> `gemini-2.5-flash`)."""
    head, sep, rest = key.partition("/")
    if not sep:
        return key
    family = litellm_provider.split("-", 1)[0]
    if head in (litellm_provider, family, provider) or head.replace("-", "_") in (litellm_provider, family):
        return rest
    return key


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def entry(spec: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for source, name in PRICES.items():
        value = _number(spec.get(source))
        if value is not None:
            out[name] = value
    tiers: dict[int, list[float | None]] = {}
    for field, value in spec.items():
        match = _TIER.match(field)
        if match and _number(value) is not None:
            threshold = int(match.group(2)) * 1000
            tiers.setdefault(threshold, [threshold, None, None, None, None])[_TIER_SLOT[match.group(1)]] = float(value)
    if tiers:
        out["tiers"] = [tiers[t] for t in sorted(tiers)]
    window = spec.get("max_input_tokens")
    if not isinstance(window, int):
        window = spec.get("max_tokens") if isinstance(spec.get("max_tokens"), int) else None
    if window:
        out["context_window"] = window
    max_output = spec.get("max_output_tokens")
    if isinstance(max_output, int) and max_output:
        out["max_output"] = max_output
    if isinstance(spec.get("mode"), str):
        out["mode"] = spec["mode"]
    caps = [c for c in CAPABILITIES if spec.get(f"supports_{c}") is True]
    if caps:
        out["capabilities"] = caps
    if isinstance(spec.get("deprecation_date"), str):
        out["deprecation_date"] = spec["deprecation_date"]
    return out


def build(source: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models: dict[str, dict[str, Any]] = {}
    origin: dict[str, str] = {}
    for key, spec in source.items():
        if key == "sample_spec" or not isinstance(spec, dict):
            continue
        litellm_provider = spec.get("litellm_provider")
        if not isinstance(litellm_provider, str) or " " in litellm_provider:
            continue
        provider = our_provider(litellm_provider)
        name = f"{provider}/{our_model(key, litellm_provider, provider)}"
        if (
            name in models
            and litellm_provider not in PREFERRED
            and (origin[name] in PREFERRED or "input" in models[name])
        ):
            continue  # first entry wins, unless this one comes from the preferred API or has prices
        models[name] = entry(spec)
        origin[name] = litellm_provider
    return dict(sorted(models.items()))


def write(models: dict[str, dict[str, Any]], out: Path = OUT) -> None:
    # One model per line: a price change is a one-line diff.
    lines = [f"{json.dumps(name)}: {json.dumps(info, separators=(',', ':'))}" for name, info in models.items()]
    out.write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    source_path = Path(argv[0])
    models = build(json.loads(source_path.read_text(encoding="utf-8")))
    write(models)
    licence = source_path.with_name("LICENSE-litellm")
    if licence.exists():
        header = (
            "models.json is derived from model_prices_and_context_window.json of LiteLLM\n"
            "(https://github.com/BerriAI/litellm), whose licence follows. It was changed: entries are keyed\n"
            "by Bifrost's provider/model names and only prices, context windows, output limits, modes and\n"
            "capability flags are kept.\n\n"
        )
        NOTICE.write_text(header + licence.read_text(encoding="utf-8"), encoding="utf-8")
    else:
        shutil.copyfile(licence, NOTICE)  # raises: the notice must travel with the data
    print(f"wrote {OUT} ({len(models)} models, {OUT.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
