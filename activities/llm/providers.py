"""One provider instance per `[providers]` entry, all sharing the worker's HTTP client."""

from __future__ import annotations

import httpx

from activities.llm.anthropic_messages import AnthropicMessages
from activities.llm.catalog import Catalog
from activities.llm.offline import OfflineProvider
from activities.llm.offline_scripts import OfflineScripts
from activities.llm.openai_chat import OpenAIChat
from activities.llm.provider import Provider


def build_providers(
    catalog: Catalog, client: httpx.AsyncClient, offline_scripts: OfflineScripts | None = None
) -> dict[str, Provider]:
    built: dict[str, Provider] = {}
    for name, spec in catalog.providers.items():
        if spec.protocol == "openai":
            built[name] = OpenAIChat(spec, client)
        elif spec.protocol == "anthropic":
            built[name] = AnthropicMessages(spec, client)
        else:
            built[name] = OfflineProvider(offline_scripts)
    return built
