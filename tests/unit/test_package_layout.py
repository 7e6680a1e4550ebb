"""Every folder of Python modules in the shipped packages is a regular package (has __init__.py).

A folder without one is a namespace package: setuptools' package finder leaves it out of the wheel and
PyInstaller's collect_submodules out of the frozen build, so the gateway would start and then fail with
"No module named ..." the first time a config uses what it holds (runtime/guardrails/ did, once)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_module_folder_is_a_regular_package() -> None:
    missing = [
        str(folder.relative_to(REPO))
        for top in ("runtime", "bifrost_cli")
        for folder in [REPO / top, *(REPO / top).rglob("*")]
        if folder.is_dir()
        and folder.name != "__pycache__"
        and any(folder.glob("*.py"))
        and not (folder / "__init__.py").is_file()
    ]
    assert missing == []
