#!/usr/bin/env bash
# Run the whole test suite, as `make test` and CI do. Starts a throw-away Redis on 6379 when
# none answers there (the tests need a real one), and stops only what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN="$(pwd)/.venv/bin"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"

started_redis=""
if ! "$BIN/python" -c "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()" \
        "$REDIS_URL" 2>/dev/null; then
    if ! command -v redis-server >/dev/null && [ "$(id -u)" = 0 ] \
            && command -v apt-get >/dev/null; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    fi
    if ! command -v redis-server >/dev/null; then
        echo "No Redis answers at $REDIS_URL and redis-server is not installed;" \
             "install it (apt-get install redis-server) or point REDIS_URL at one." >&2
        exit 1
    fi
    port="$("$BIN/python" -c "from urllib.parse import urlsplit; import sys; \
print(urlsplit(sys.argv[1]).port or 6379)" "$REDIS_URL")"
    redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --daemonize yes \
        --pidfile "/tmp/mobileconv-test-redis-$port.pid" >/dev/null
    started_redis="/tmp/mobileconv-test-redis-$port.pid"
    for _ in $(seq 50); do
        "$BIN/python" -c "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()" \
            "$REDIS_URL" 2>/dev/null && break
        sleep 0.1
    done
fi
cleanup() {
    if [ -n "$started_redis" ] && [ -f "$started_redis" ]; then
        kill "$(cat "$started_redis")" 2>/dev/null || true
    fi
}
trap cleanup EXIT

"$BIN/python" -m pytest "$@"
