"""Rich output for people: the start-up banner and error lines (stderr, so stdout stays clean)."""

from __future__ import annotations

from urllib.parse import urlsplit

from rich.console import Console
from rich.table import Table

from runtime.config.model import GatewayConfig

console = Console(stderr=True, highlight=False)


def error(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", soft_wrap=True)


def shown_url(url: str) -> str:
    """A base_url as the banner shows it: scheme, host, port and path; never userinfo or a query (either
    may carry a credential)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "(unparseable URL)"
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port is None else f"{host}:{port}"
    return f"{parts.scheme}://{netloc}{parts.path}" if parts.scheme else "(not an absolute URL)"


def banner(config: GatewayConfig, extra_rows: list[tuple[str, str]] | None = None) -> None:
    host = f"[{config.host}]" if ":" in config.host else config.host
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan")
    table.add_column()
    table.add_row("Bifrost", f"http://{host}:{config.port}  (OpenAI-compatible: /v1/chat/completions)")
    table.add_row("app dir", str(config.app_dir))
    table.add_row(
        "config",
        str(config.config_path) + ("" if config.config_path.exists() else "  (none: providers from environment)"),
    )
    table.add_row("workers", str(config.workers))
    for label, value in extra_rows or ():
        table.add_row(label, value)
    table.add_row("request log", str(config.log_db_path) if config.client.enable_logging else "off")
    for name, provider in sorted(config.providers.items()):
        models = ", ".join(provider.models or tuple(m for k in provider.keys for m in k.models)) or "any model"
        label = "built-in mock, no network" if provider.kind == "mock" else f"{len(provider.keys)} key(s), {models}"
        if provider.network.base_url:
            label += f", base_url {shown_url(provider.network.base_url)}"
        table.add_row("provider", f"{name}: {label}")
    console.print(table)
