"""PyInstaller hook for `bifrost_cli`: subcommands may be registered by module name."""

from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("bifrost_cli")
