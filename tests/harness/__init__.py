"""Test harness: run the real gateway as a subprocess, build its config, read its request log."""

from .checks import assert_error_shape, assert_gateway_headers
from .config import azure_provider, custom_provider, make_config, network, openai_provider
from .logdb import LogDB
from .process import Gateway, GatewayStartError, StartGateway, free_port, run_to_exit, start_gateway
from .sse import SSEEvent, parse_sse, read_sse

__all__ = [
    "Gateway",
    "GatewayStartError",
    "LogDB",
    "SSEEvent",
    "StartGateway",
    "assert_error_shape",
    "assert_gateway_headers",
    "azure_provider",
    "custom_provider",
    "free_port",
    "make_config",
    "network",
    "openai_provider",
    "parse_sse",
    "read_sse",
    "run_to_exit",
    "start_gateway",
]
