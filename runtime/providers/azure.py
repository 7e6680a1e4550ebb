"""Azure OpenAI: OpenAI's body format at per-resource deployment URLs, keyed with `api-key`.

Each key carries its resource `endpoint`, a model -> deployment map and the `api-version`; a model
without an entry is assumed to be deployed under its own name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from runtime.config.model import KeyConfig, ProviderConfig
from runtime.errors import ProviderError
from runtime.providers.base import CHAT, COMPLETIONS, EMBEDDINGS
from runtime.providers.common import path_segment
from runtime.providers.openai import PATHS, OpenAIAdapter, openai_error
from runtime.providers.registry import ProviderSpec


class AzureAdapter(OpenAIAdapter):
    kind = "azure"
    operations = frozenset((CHAT, COMPLETIONS, EMBEDDINGS))

    def url(self, provider: ProviderConfig, spec: ProviderSpec, op: str, model: str, key: KeyConfig) -> str:
        azure = key.azure
        assert azure is not None, "config validation guarantees azure_key_config on Azure keys"
        endpoint = provider.network.base_url or azure.endpoint
        # The deployment is the client's model unless the key maps it: one encoded segment either way,
        # so a model like "gpt-4o?api-version=…#" cannot replace the configured api-version.
        deployment = path_segment(azure.deployments.get(model, model))
        return f"{endpoint}/openai/deployments/{deployment}{PATHS[op]}?api-version={azure.api_version}"

    def auth_headers(self, key: KeyConfig) -> dict[str, str]:
        return {"api-key": key.value}

    def parse_error(self, status: int, headers: Mapping[str, str], raw: bytes) -> ProviderError:
        return openai_error(status, headers, raw, "Azure OpenAI")

    def deployments(self, key: KeyConfig) -> Iterable[str]:
        return key.azure.deployments if key.azure else ()
