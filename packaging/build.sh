#!/usr/bin/env bash
# Build the self-contained one-dir gateway: dist/bifrost/bifrost (+ dist/bifrost/_internal/).
#
#   packaging/build.sh                 # uses $PYTHON, else ./.venv/bin/python, else python3
#   PYTHON=/work/venv/bin/python packaging/build.sh
#   DIST_DIR=/tmp/out WORK_DIR=/tmp/work packaging/build.sh   # build elsewhere (the tests do)
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

dist="${DIST_DIR:-$repo/dist}"
work="${WORK_DIR:-$repo/build/pyinstaller}"

start=$(date +%s)
"$PYTHON" -m PyInstaller --noconfirm --clean --log-level WARN \
    --distpath "$dist" --workpath "$work" "$repo/packaging/bifrost.spec"
end=$(date +%s)

"$dist/bifrost/bifrost" --version
echo "built $dist/bifrost in $((end - start))s, size $(du -sh "$dist/bifrost" | cut -f1)"
