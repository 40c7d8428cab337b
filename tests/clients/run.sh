#!/usr/bin/env bash
# Generates the Python and TypeScript clients from openapi/openapi.json (into the target
# directory; nothing generated is committed) and drives every operation of a live server with
# each: successes and the main errors, every answer checked against the generated types.
# The TypeScript side is type-checked with `tsc --strict` before it runs. openapi/asyncapi.yaml
# is validated with the AsyncAPI parser on the way.
set -euo pipefail
source "$(dirname "$0")/../contract/server.sh"

OPENAPI_PYTHON_CLIENT_VERSION=0.29.1
HERE="$ROOT/tests/clients"
OUT="$TARGET_DIR/contract/clients"

run_python=true
run_typescript=true
require_tool python3 || run_python=false
if ! require_tool node || ! require_tool npm; then
    run_typescript=false
fi
if ! $run_python && ! $run_typescript; then
    exit 0
fi

start_server

if $run_python; then
    VENV="$TARGET_DIR/contract/client-venv"
    if ! "$VENV/bin/pip" show openapi-python-client 2>/dev/null | grep -q "^Version: $OPENAPI_PYTHON_CLIENT_VERSION$"; then
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet --disable-pip-version-check \
            "openapi-python-client==$OPENAPI_PYTHON_CLIENT_VERSION"
    fi
    rm -rf "$OUT/python"
    "$VENV/bin/openapi-python-client" generate --path "$ROOT/openapi/openapi.json" \
        --output-path "$OUT/python" --config "$HERE/python/config.yaml" >/dev/null
    PYTHONPATH="$OUT/python" "$VENV/bin/python" "$HERE/python/drive.py" "$BASE_URL"
fi

if $run_typescript; then
    cd "$HERE/typescript"
    SCARF_ANALYTICS=false npm ci --silent --no-audit --no-fund
    node asyncapi.mjs "$ROOT/openapi/asyncapi.yaml"
    rm -rf generated build
    npx --no-install openapi-typescript "$ROOT/openapi/openapi.json" -o generated/schema.d.ts --silent
    npx --no-install tsc -p . --strict
    node build/drive.js "$BASE_URL"
fi
