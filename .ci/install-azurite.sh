#!/usr/bin/env bash
# Install Azurite (the Azure Storage emulator, npm package `azurite`) into $REPO/.azurite, idempotently.
#
# The object-store tests (tests/object_stores.py) start `.azurite/node_modules/.bin/azurite-blob` once per
# test session. A project-local prefix keeps the install out of the system and out of git; a stamp file
# records a finished install of the pinned version, so re-running is a no-op.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$REPO/.azurite"
VERSION="${AZURITE_VERSION:-3.35.0}"
STAMP="$BASE/.installed"
BIN="$BASE/node_modules/.bin/azurite-blob"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "azurite@$VERSION" && -x "$BIN" ]]; then
  echo "azurite: already installed in $BASE"
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  echo "azurite: npm not found; install Node.js >= 18 (with npm) to run the Azure object-store tests" >&2
  exit 1
fi
mkdir -p "$BASE"
rm -f "$STAMP"
npm install --prefix "$BASE" --no-audit --no-fund --loglevel=error "azurite@$VERSION"
test -x "$BIN"
echo "azurite@$VERSION" >"$STAMP"
echo "azurite: installed azurite@$VERSION in $BASE"
