"""The model catalog, the price arithmetic and pricing_overrides, in-process (no gateway needed).

The end-to-end figures on log rows are in test_cost.py; here: the shipped file (size, licence notice,
generator output, the wheel), the matching rules, Go's override precedence and the config errors."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path
from types import MappingProxyType

import pytest

from runtime.catalog import CATALOG, DATA, NOTICE, Catalog, ModelInfo, cost, gen_catalog, lookup
from runtime.config.load import ConfigError, parse_provider
from runtime.config.model import AzureKeyConfig, KeyConfig, PricingOverride, ProviderConfig, Tuning
from runtime.core.context import RequestContext
from runtime.core.cost import PriceBook, price
from runtime.providers.base import Usage

REPO = Path(__file__).resolve().parents[1]
SOURCE = Path("/work/shared/reference/pricing/model_prices_and_context_window.json")


# -- the shipped file ---------------------------------------------------------------------------------
def test_catalog_has_about_4000_models_and_its_licence_notice() -> None:
    assert 3800 <= len(CATALOG) <= 5000
    notice = NOTICE.read_text(encoding="utf-8")
    assert "MIT License" in notice and "Berri AI" in notice
    for name in ("openai/gpt-4o", "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash", "vertex/gemini-2.5-flash"):
        assert lookup(*name.split("/", 1)) is not None, name


def test_package_data_and_frozen_build_ship_the_catalog() -> None:
    package_data = (REPO / "pyproject.toml").read_text().split("[tool.setuptools.package-data]", 1)[1]
    assert '"catalog/models.json"' in package_data and '"catalog/models_NOTICE.txt"' in package_data
    spec = (REPO / "packaging" / "bifrost.spec").read_text()
    assert "catalog/models.json" in spec and "catalog/models_NOTICE.txt" in spec


@pytest.mark.packaging
def test_built_wheel_holds_the_catalog_and_its_notice(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("bifrost_gateway-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        assert {"runtime/catalog/models.json", "runtime/catalog/models_NOTICE.txt"} <= names
        assert len(json.loads(archive.read("runtime/catalog/models.json"))) == len(CATALOG)


@pytest.mark.skipif(not SOURCE.exists(), reason="the reference price list is not on this machine")
def test_shipped_file_is_the_generator_output(tmp_path: Path) -> None:
    out = tmp_path / "models.json"
    gen_catalog.write(gen_catalog.build(json.loads(SOURCE.read_text(encoding="utf-8"))), out)
    assert out.read_text(encoding="utf-8") == DATA.read_text(encoding="utf-8")


def test_generator_maps_litellm_names_to_ours() -> None:
    source = {
        "gemini/gemini-x": {"litellm_provider": "gemini", "mode": "chat", "input_cost_per_token": 1e-6},
        "claude-y@2025": {"litellm_provider": "vertex_ai-anthropic_models", "input_cost_per_token": 2e-6},
        "vertex_ai/claude-z": {"litellm_provider": "vertex_ai-anthropic_models", "input_cost_per_token": 2e-6},
        "us.anthropic.c-v1:0": {"litellm_provider": "bedrock", "input_cost_per_token": 9.0},
        "bedrock/us.anthropic.c-v1:0": {"litellm_provider": "bedrock_converse", "input_cost_per_token": 3e-6},
        "together_ai/meta/Llama": {"litellm_provider": "together_ai", "output_cost_per_token": 1e-6},
        "azure/gpt-q": {
            "litellm_provider": "azure",
            "input_cost_per_token": 1e-6,
            "input_cost_per_token_above_200k_tokens": 2e-6,
            "supports_vision": True,
            "supports_pdf_input": False,
            "max_input_tokens": 1000,
            "max_output_tokens": 10,
            "input_cost_per_token_batches": 5e-7,  # dropped
        },
    }
    models = gen_catalog.build(source)
    assert set(models) == {
        "gemini/gemini-x",
        "vertex/claude-y@2025",
        "vertex/claude-z",
        "bedrock/us.anthropic.c-v1:0",
        "together/meta/Llama",
        "azure/gpt-q",
    }
    assert models["bedrock/us.anthropic.c-v1:0"]["input"] == 3e-6, "the Converse entry wins"
    assert models["azure/gpt-q"] == {
        "input": 1e-6,
        "tiers": [[200000, 2e-6, None, None, None]],
        "context_window": 1000,
        "max_output": 10,
        "capabilities": ["vision"],
    }


# -- arithmetic and matching ---------------------------------------------------------------------------
def test_each_prompt_token_is_priced_once_at_its_rate() -> None:
    info = ModelInfo("p", "m", input=1.0, output=10.0, cache_read=0.1, cache_write=1.25)
    assert info.price(prompt=100, completion=5) == 100 * 1.0 + 5 * 10.0
    # 100 prompt tokens of which 60 read from cache and 30 written to it: 10 fresh.
    assert info.price(prompt=100, completion=5, cached=60, cache_write=30) == pytest.approx(
        10 * 1.0 + 60 * 0.1 + 30 * 1.25 + 5 * 10.0
    )
    no_discount = ModelInfo("p", "m", input=1.0, output=10.0)
    assert no_discount.price(prompt=100, completion=0, cached=60) == 100.0, "no cached rate: the input rate"


def test_tiers_apply_over_their_threshold() -> None:
    info = ModelInfo("p", "m", input=1.0, output=2.0, cache_read=0.5, tiers=((200_000, 3.0, 4.0, None, None),))
    assert info.price(200_000, 1) == 200_000 * 1.0 + 2.0
    assert info.price(200_001, 1, cached=1) == pytest.approx(200_000 * 3.0 + 1 * 0.5 + 4.0)


def test_lookup_fallbacks_and_what_is_not_matched() -> None:
    dated, undated = lookup("openai", "gpt-4o-2024-05-13"), lookup("openai", "gpt-4o")
    assert dated is not None and undated is not None and dated.input != undated.input, "a snapshot is its own entry"
    assert lookup("openai", "gpt-4o-2099-01-01") is None, "an unknown snapshot is not priced as its alias"
    plain = lookup("bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0")
    assert plain is not None
    assert lookup("bedrock", "zz.anthropic.claude-3-5-sonnet-20240620-v1:0") is None
    arn = "arn:aws:bedrock:us-east-1:000000000000:inference-profile/apac.anthropic.claude-3-5-sonnet-20240620-v1:0"
    assert lookup("bedrock", arn) is not None
    assert lookup("vertex", "publishers/google/models/gemini-2.5-flash") is lookup("vertex", "gemini-2.5-flash")
    assert lookup("azure", "gpt-4o") is not None
    missing_on_azure = next(
        n.split("/", 1)[1]
        for n in CATALOG.names()
        if n.startswith("openai/") and CATALOG.exact("azure", n.split("/", 1)[1]) is None
    )
    found = lookup("azure", missing_on_azure)
    assert found is not None and found.provider == "openai"
    assert lookup("my-custom", "gpt-4o") is None and lookup("openai", "GPT-4O") is None
    assert cost("openai", "no-such-model", Usage(10, 10)) is None


def test_catalog_is_read_on_first_lookup_only(tmp_path: Path) -> None:
    path = tmp_path / "models.json"
    catalog = Catalog(path)  # constructing it does not read the file...
    path.write_text(json.dumps({"x/y": {"input": 1e-6, "output": 2e-6}}))
    assert catalog.lookup("x", "y") is not None  # ...the first lookup does


@pytest.mark.parametrize("content", [None, "{not json", "[1, 2]"])
def test_a_missing_or_broken_catalog_leaves_requests_unpriced(
    tmp_path: Path, content: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "models.json"
    if content is not None:
        path.write_text(content)
    catalog = Catalog(path)
    assert catalog.lookup("openai", "gpt-4o") is None and len(catalog) == 0
    assert "model catalog" in caplog.text and "without cost" in caplog.text


# -- overrides (Go's precedence) and price(ctx) ---------------------------------------------------------
def provider(name: str = "openai", kind: str = "openai", *overrides: PricingOverride, **kw: object) -> ProviderConfig:
    return ProviderConfig(name=name, kind=kind, pricing_overrides=overrides, **kw)  # type: ignore[arg-type]


def override(pattern: str, match: str, price_in: float, *types: str) -> PricingOverride:
    return PricingOverride(pattern, match, types, MappingProxyType({"input_cost_per_token": price_in}))


def test_override_precedence_follows_go() -> None:
    book = PriceBook(
        {
            "openai": provider(
                "openai",
                "openai",
                override("^gpt-.*$", "regex", 30.0),
                override("gpt-*", "wildcard", 10.0),
                override("gpt-4*", "wildcard", 11.0),
                override("gpt-4o", "exact", 20.0),
                override("gpt-4o-mini", "exact", 21.0),
                override("gpt-4o-mini", "exact", 22.0, "embedding"),
                override("o3-*", "wildcard", 40.0, "chat_completion_stream"),
            )
        }
    )

    def rate(model: str, kind: str = "chat") -> float | None:
        info = book.info("openai", model, kind)
        return None if info is None else info.input

    assert rate("gpt-4o") == 20.0, "exact beats wildcard and regex"
    assert rate("gpt-4.1") == 11.0, "the wildcard with more literal characters wins"
    assert rate("gpt-3.5-turbo") == 10.0
    assert rate("gpt-4o-mini", "embeddings") == 22.0, "one limited to the request type beats a generic one"
    assert rate("gpt-4o-mini") == 21.0
    assert rate("o3-mini") == 40.0 and rate("o3-mini", "embeddings") == lookup("openai", "o3-mini").input  # type: ignore[union-attr]
    output = lookup("openai", "gpt-4o").output  # type: ignore[union-attr]
    assert book.info("openai", "gpt-4o").output == output, "fields an override does not set keep the catalog's"  # type: ignore[union-attr]
    # A regex matches anywhere in the name, as Go's MatchString; a wildcard the whole name.
    regex_book = PriceBook({"openai": provider("openai", "openai", override("mini", "regex", 1.0))})
    assert regex_book.info("openai", "gpt-4o-mini").input == 1.0  # type: ignore[union-attr]
    wild_book = PriceBook({"openai": provider("openai", "openai", override("mini*", "wildcard", 1.0))})
    assert wild_book.info("openai", "gpt-4o-mini").input == lookup("openai", "gpt-4o-mini").input  # type: ignore[union-attr]


def test_azure_deployment_maps_through_its_configured_model() -> None:
    key = KeyConfig("k", "v", azure=AzureKeyConfig("https://x.example", MappingProxyType({"gpt-4o": "prod-4o"})))
    book = PriceBook({"az": provider("az", "azure", keys=(key,))})
    via_deployment = book.info("az", "prod-4o")
    assert via_deployment is not None and via_deployment.input == lookup("azure", "gpt-4o").input  # type: ignore[union-attr]


def test_price_sets_cost_once_and_keeps_a_hook_value() -> None:
    providers = {"openai": provider()}
    ctx = RequestContext("r1", "chat")
    ctx.provider, ctx.model = "openai", "gpt-4o"
    price(ctx, providers)
    assert ctx.cost is None, "no usage: unpriced"
    ctx.usage = Usage(100, 10, cached_tokens=40)
    price(ctx, providers)
    info = lookup("openai", "gpt-4o")
    assert info is not None and info.cache_read is not None
    assert ctx.cost == pytest.approx(60 * info.input + 40 * info.cache_read + 10 * info.output)  # type: ignore[operator]
    hit = RequestContext("r2", "chat")
    hit.provider, hit.model, hit.usage, hit.cost = "openai", "gpt-4o", Usage(100, 10), 0.0
    price(hit, providers)
    assert hit.cost == 0.0, "a cache hit's 0 set by a hook stays"


# -- config ----------------------------------------------------------------------------------------------
def parse(overrides: object, warnings: list[str] | None = None) -> ProviderConfig:
    data = {"keys": [{"value": "sk-x"}], "pricing_overrides": overrides}
    return parse_provider("openai", data, {}, Tuning(), warnings=warnings)


def test_pricing_overrides_config_is_parsed_as_go_writes_it() -> None:
    warnings: list[str] = []
    config = parse(
        [
            {
                "model_pattern": "gpt-4o*",
                "match_type": "wildcard",
                "request_types": ["chat_completion", "chat_completion_stream"],
                "input_cost_per_token": 0.000001,
                "cache_read_input_token_cost": 0,
                "input_cost_per_character": 0.1,
            }
        ],
        warnings,
    )
    (only,) = config.pricing_overrides
    assert only.request_types == ("chat_completion", "chat_completion_stream")
    assert dict(only.prices) == {"input_cost_per_token": 0.000001, "cache_read_input_token_cost": 0.0}
    assert warnings == [
        "providers.openai.pricing_overrides[0].input_cost_per_character: "
        "Go Bifrost setting not implemented in this version; it has no effect"
    ]


@pytest.mark.parametrize(
    ("item", "path", "words"),
    [
        ({"match_type": "exact"}, "[0].model_pattern", "is required"),
        ({"model_pattern": "x"}, "[0].match_type", "must be one of exact, wildcard, regex"),
        ({"model_pattern": "x", "match_type": "glob"}, "[0].match_type", "'glob'"),
        ({"model_pattern": "gpt-*", "match_type": "exact"}, "[0].model_pattern", "cannot contain '*'"),
        ({"model_pattern": "gpt", "match_type": "wildcard"}, "[0].model_pattern", "needs at least one '*'"),
        ({"model_pattern": "(", "match_type": "regex"}, "[0].model_pattern", "invalid regular expression"),
        ({"model_pattern": "x", "match_type": "exact", "request_types": ["chat"]}, "[0].request_types[0]", "'chat'"),
        ({"model_pattern": "x", "match_type": "exact", "input_cost_per_tokn": 1}, "[0].input_cost_per_tokn", "did you"),
        ({"model_pattern": "x", "match_type": "exact", "output_cost_per_token": -1}, "[0].output_cost_per_token", "-1"),
        ({"model_pattern": "x", "match_type": "exact", "output_cost_per_token": "1"}, "[0].output_cost_per_token", "1"),
        ({"model_pattern": "x", "match_type": "exact", "output_cost_per_token": True}, "[0].output_cost_per_token", ""),
    ],
)
def test_pricing_override_errors_name_the_field(item: dict[str, object], path: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse([item])
    assert err.value.path == f"providers.openai.pricing_overrides{path}"
    assert words in err.value.message


def test_pricing_overrides_must_be_a_list() -> None:
    with pytest.raises(ConfigError) as err:
        parse({"model_pattern": "x"})
    assert err.value.path == "providers.openai.pricing_overrides"


def test_admin_view_shows_pricing_overrides_and_a_round_trip_keeps_them() -> None:
    """Prices are named like secrets (`..._token`): the admin view must show them, and GET then PUT
    must store them unchanged (a masked price would make the edit fail validation)."""
    from runtime.http.admin_views import masked, merge_secrets

    stored = {
        "keys": [{"name": "k", "value": "sk-secret-value"}],
        "pricing_overrides": [
            {"model_pattern": "gpt-*", "match_type": "wildcard", "input_cost_per_token": 0.000001},
        ],
    }
    view = {field: masked(field, value) for field, value in stored.items()}
    assert view["pricing_overrides"] == stored["pricing_overrides"]
    assert view["keys"][0]["value"] != "sk-secret-value"
    back = merge_secrets(view, stored)
    assert back == stored
    assert parse_provider("openai", back, {}, Tuning()).pricing_overrides[0].prices["input_cost_per_token"] == 1e-6


def test_the_mock_provider_is_unpriced_without_reading_the_catalog(tmp_path: Path) -> None:
    import runtime.core.cost as cost_module

    never = Catalog(tmp_path / "absent.json")
    saved = cost_module.CATALOG
    cost_module.CATALOG = never
    try:
        ctx = RequestContext("r", "chat")
        ctx.provider, ctx.model, ctx.usage = "mock", "mock-gpt", Usage(5, 5)
        price(ctx, {"mock": provider("mock", "mock")})
    finally:
        cost_module.CATALOG = saved
    assert ctx.cost is None and never._raw is None
