#!/usr/bin/env bash
# Runs schemathesis against a live server: every check, every phase (the stateful one too),
# authenticated as a freshly registered user, the logout operations left out (they would end the
# session the run uses). Any finding fails. Installs its pinned version into a virtualenv under
# the target directory on first use.
set -euo pipefail
source "$(dirname "$0")/server.sh"

SCHEMATHESIS_VERSION=4.32.5
# The whole run's budget, in seconds (fuzzing and the stateful phase stop when it is spent), and
# the hard limit past which it is stopped and fails (shrinking a finding may overrun the budget).
MAX_TIME="${CONTRACT_MAX_TIME:-150}"
HARD_LIMIT=$((MAX_TIME + 90))

require_tool python3 || exit 0
VENV="$TARGET_DIR/contract/venv"
if [ ! -x "$VENV/bin/st" ] || ! "$VENV/bin/pip" show schemathesis 2>/dev/null | grep -q "^Version: $SCHEMATHESIS_VERSION$"; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

start_server
TOKEN="$(python3 - "$BASE_URL" <<'PY'
import json, sys, urllib.request
body = json.dumps({"email": "fuzz@example.com", "username": "fuzz", "password": "Fuzz3rPassw0rd"}).encode()
request = urllib.request.Request(sys.argv[1] + "/auth/register", body, {"Content-Type": "application/json"})
print(json.load(urllib.request.urlopen(request))["access_token"])
PY
)"

REPORT_DIR="$TARGET_DIR/contract/schemathesis"
rm -rf "$REPORT_DIR"
cd "$SERVER_DIR"
timeout --signal=INT --kill-after=10 "$HARD_LIMIT" \
    "$VENV/bin/st" --config-file "$ROOT/tests/contract/schemathesis.toml" run "$BASE_URL/openapi.json" \
    --url "$BASE_URL" \
    --header "Authorization: Bearer $TOKEN" \
    --exclude-operation-id logout --exclude-operation-id logoutAll \
    --checks all \
    --phases examples,coverage,fuzzing,stateful \
    --max-time "$MAX_TIME" \
    --seed "${CONTRACT_SEED:-20261201}" \
    --workers 2 \
    --report ndjson --report-dir "$REPORT_DIR" \
    --output-truncate true || {
    status=$?
    if [ "$status" -eq 124 ]; then
        echo "contract: schemathesis ran past ${HARD_LIMIT} s and was stopped" >&2
    fi
    exit "$status"
}
