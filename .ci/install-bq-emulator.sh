#!/usr/bin/env bash
# Install the local BigQuery emulator (local-bigquery 0.3.2) into $REPO/.bq-emulator, idempotently.
#
# Why this shape (see shared/reference/bq-emulators.md):
# - local-bigquery needs Python >= 3.13, so it gets its own venv from pyenv's 3.13.0 and runs out of process.
# - A stock install downloads DuckDB extensions at start-up, which fails offline. DuckDB is pinned to 1.5.5
#   and the icu/ducklake/spatial extension files are copied from their PyPI wheels into a private HOME
#   ($BASE/home/.duckdb/extensions/v1.5.5/linux_amd64/), which the test fixture passes as HOME.
# - A stamp file records a finished install; re-running is a no-op unless the pins change.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
BASE="$REPO/.bq-emulator"
DUCKDB_VERSION="1.5.5"
PACKAGES=(
  "local-bigquery==0.3.2"
  "duckdb==$DUCKDB_VERSION"
  "duckdb-extension-icu==$DUCKDB_VERSION"
  "duckdb-extension-ducklake==$DUCKDB_VERSION"
  "duckdb-extension-spatial==$DUCKDB_VERSION"
)
EXTENSIONS=(icu ducklake spatial)
STAMP="$BASE/.installed"
STAMP_CONTENT="${PACKAGES[*]}"
EXT_DIR="$BASE/home/.duckdb/extensions/v$DUCKDB_VERSION/linux_amd64"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$STAMP_CONTENT" && -x "$BASE/venv/bin/local-bigquery" ]]; then
  echo "bq-emulator: already installed in $BASE"
  exit 0
fi

PY313=""
if command -v pyenv >/dev/null 2>&1; then
  prefix="$(pyenv prefix 3.13.0 2>/dev/null || true)"
  if [[ -n "$prefix" && -x "$prefix/bin/python3.13" ]]; then
    PY313="$prefix/bin/python3.13"
  fi
fi
if [[ -z "$PY313" && -x /root/.pyenv/versions/3.13.0/bin/python3.13 ]]; then
  PY313=/root/.pyenv/versions/3.13.0/bin/python3.13
fi
if [[ -z "$PY313" ]] && command -v python3.13 >/dev/null 2>&1; then
  PY313="$(command -v python3.13)"
fi
if [[ -z "$PY313" ]]; then
  echo "bq-emulator: Python 3.13 not found (tried 'pyenv prefix 3.13.0', /root/.pyenv/versions/3.13.0," \
    "python3.13 on PATH). local-bigquery requires Python >= 3.13; install it with 'pyenv install 3.13.0'." >&2
  exit 1
fi

echo "bq-emulator: installing into $BASE with $PY313"
rm -f "$STAMP"
mkdir -p "$BASE"
if [[ ! -x "$BASE/venv/bin/python" ]]; then
  "$PY313" -m venv "$BASE/venv"
fi
"$BASE/venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PACKAGES[@]}"

mkdir -p "$EXT_DIR"
SITE="$("$BASE/venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")"
for extension in "${EXTENSIONS[@]}"; do
  source_file="$SITE/duckdb_extension_$extension/extensions/v$DUCKDB_VERSION/$extension.duckdb_extension"
  if [[ ! -f "$source_file" ]]; then
    echo "bq-emulator: extension file missing: $source_file" >&2
    exit 1
  fi
  cp "$source_file" "$EXT_DIR/"
done

echo "$STAMP_CONTENT" > "$STAMP"
echo "bq-emulator: installed ($("$BASE/venv/bin/local-bigquery" --help >/dev/null 2>&1 && echo ok || echo 'cli check failed'))"
