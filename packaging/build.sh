#!/usr/bin/env bash
# Build the self-contained one-dir gateway: dist/bifrost/bifrost (+ dist/bifrost/_internal/).
#
#   packaging/build.sh                 # uses $PYTHON, else ./.venv/bin/python, else python3
#   PYTHON=/work/venv/bin/python packaging/build.sh
#
# The Python used must have the gateway's dependencies and pyinstaller (pip install -e '.[build]').
# It prints the build time and the size of the result on the last lines.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x .venv/bin/python ]]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi

if ! "$PYTHON" -c "import PyInstaller" 2>/dev/null; then
    echo "build.sh: $PYTHON has no PyInstaller; run: $PYTHON -m pip install -e '.[build]'" >&2
    exit 1
fi

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$repo/dist" --workpath "$repo/build/pyinstaller" \
    "$repo/packaging/bifrost.spec"
end=$(date +%s)

"$repo/dist/bifrost/bifrost" --version
echo "built dist/bifrost in $((end - start))s, size $(du -sh "$repo/dist/bifrost" | cut -f1)"
