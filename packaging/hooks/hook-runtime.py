"""PyInstaller hook for the gateway package `runtime`.

Providers, plugins and ingress formats are looked up through tables and may be imported by name,
which PyInstaller's import scanner cannot follow, so every submodule is collected.
"""

from PyInstaller.utils.hooks import collect_submodules

hiddenimports = collect_submodules("runtime")
