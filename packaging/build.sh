#!/usr/bin/env bash
# Build the one-folder app into dist/latentstudio/ and check that it starts.
#   packaging/build.sh [python]        (default: the python on PATH, with latentstudio's deps)
# PyInstaller is installed into build/pyinstaller-deps (a private --target folder), so the
# environment the app runs from is left as it is.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PY="${1:-python3}"
DEPS="$ROOT/build/pyinstaller-deps"
cd "$ROOT"
if ! PYTHONPATH="$DEPS" "$PY" -c "import PyInstaller" 2>/dev/null; then
    "$PY" -m pip install --quiet --target "$DEPS" "pyinstaller>=6.6"
fi
PYTHONPATH="$DEPS" "$PY" -m PyInstaller packaging/latentstudio.spec --noconfirm \
    --distpath dist --workpath build/pyinstaller
APP="$ROOT/dist/latentstudio/latentstudio"
"$APP" --help > /dev/null
"$APP" models list
# the editor itself: start it offscreen and quit after it has shown its window
QT_QPA_PLATFORM=offscreen LATENTSTUDIO_SMOKE_QUIT_MS=20000 \
    LATENTSTUDIO_SMOKE_SHOT="$ROOT/build/smoke.png" "$APP"
echo "smoke screenshot of the frozen editor: build/smoke.png"
install -Dm644 packaging/latentstudio.desktop dist/latentstudio/share/applications/latentstudio.desktop
install -Dm644 packaging/latentstudio.svg dist/latentstudio/share/icons/hicolor/scalable/apps/latentstudio.svg
install -Dm644 packaging/latentstudio-mime.xml dist/latentstudio/share/mime/packages/latentstudio.xml
echo "built: $APP  (desktop entry, icon and MIME type under dist/latentstudio/share/)"
