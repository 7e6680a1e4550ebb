"""Bifrost's web UI as static files (plain ES modules + CSS, no build step), served by runtime/http/ui.py."""
