# Shared by the contract checks (sourced, not run): builds the convo binary, starts it on a free
# port on the embedded default (SQLite in a temporary directory, in-process adapters) and stops
# it on exit. Sets BASE_URL. Needs CARGO_TARGET_DIR or the workspace's target/.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
CARGO="${CARGO:-cargo}"

# A tool the checks cannot run without: under CI=true its absence fails the run with one line;
# elsewhere the check is skipped with a note (exit 0 from the caller).
require_tool() {
    if command -v "$1" >/dev/null 2>&1; then
        return 0
    fi
    if [ "${CI:-}" = "true" ]; then
        echo "contract: $1 is required but was not found on PATH" >&2
        exit 1
    fi
    echo "contract: skipping, $1 is not installed" >&2
    return 1
}

start_server() {
    "$CARGO" build --quiet --locked -p convo-server --bin convo
    SERVER_DIR="$(mktemp -d)"
    local port
    port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    (
        cd "$SERVER_DIR" &&
            exec env DATABASE_URL="sqlite://$SERVER_DIR/convo.db?mode=rwc" HOST=127.0.0.1 PORT="$port" \
                JWT_SECRET="contract-checks-secret-of-32-bytes!" RATE_LIMIT_POINTS=1000000 \
                RATE_LIMIT_DURATION=1 REGISTRATIONS_PER_ADDRESS=1000000 RUST_LOG=info \
                "$TARGET_DIR/debug/convo" serve
    ) >"$SERVER_DIR/server.log" 2>&1 &
    SERVER_PID=$!
    trap stop_server EXIT
    BASE_URL="http://127.0.0.1:$port"
    for _ in $(seq 1 200); do
        if python3 -c "import urllib.request, sys; urllib.request.urlopen(sys.argv[1] + '/health', timeout=1)" \
            "$BASE_URL" 2>/dev/null; then
            return 0
        fi
        if ! kill -0 "$SERVER_PID" 2>/dev/null; then
            break
        fi
        sleep 0.1
    done
    echo "contract: the server did not start; its log:" >&2
    cat "$SERVER_DIR/server.log" >&2
    exit 1
}

stop_server() {
    local status=$?
    if [ "$status" -ne 0 ] && [ -f "${SERVER_DIR:-}/server.log" ]; then
        echo "contract: the server's last log lines:" >&2
        tail -n 40 "$SERVER_DIR/server.log" >&2
    fi
    if [ -n "${SERVER_PID:-}" ]; then
        kill "$SERVER_PID" 2>/dev/null || true
        wait "$SERVER_PID" 2>/dev/null || true
    fi
    rm -rf "${SERVER_DIR:-}"
}
