"""Bifrost's command line: a thin shell that builds a GatewayConfig and calls runtime.run."""
