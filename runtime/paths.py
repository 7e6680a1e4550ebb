"""Where things are on disk, in one place: the bundled UI and the default app dir (created private).

`ui_dist/` is a top-level package so the wheel ships it; in a source checkout or an editable install
it sits beside `runtime/`; in a PyInstaller build it is unpacked under `sys._MEIPASS`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import platformdirs


def ui_dist_dir() -> Path | None:
    """The directory holding the UI's index.html, or None if this build has no UI."""
    candidates: list[Path] = []
    frozen_root = getattr(sys, "_MEIPASS", None)
    if frozen_root:
        candidates.append(Path(frozen_root) / "ui_dist")
    try:
        import ui_dist  # the installed package (wheel or editable)

        candidates.extend(Path(p) for p in getattr(ui_dist, "__path__", []))
    except ImportError:
        pass
    candidates.append(Path(__file__).resolve().parent.parent / "ui_dist")  # source checkout
    for path in candidates:
        if (path / "index.html").is_file():
            return path
    return None


def default_app_dir() -> Path:
    """Per-user config dir for "bifrost" (e.g. ~/.config/bifrost on Linux)."""
    return Path(platformdirs.user_config_dir("bifrost", appauthor=False))


def ensure_private_dir(path: Path) -> Path:
    """Create `path` (and missing parents) readable by its owner only (0700, whatever the umask).

    The app dir holds prompts (logs.db) and keys (config.json). A directory that already exists is
    left as it is: it may be one the user chose and shares on purpose (its files are still 0600)."""
    path = Path(path)
    if not path.is_dir():
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    return path
