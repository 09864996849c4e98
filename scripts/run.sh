#!/usr/bin/env bash
# Start mobileconv on this machine: Redis (only if none answers at REDIS_URL), the API under
# gunicorn and one Celery worker. Ctrl-C stops everything this script started.
# Called by `make run` once .venv exists; artifacts and logs go under ./var.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT="$(pwd)"
BIN="$ROOT/.venv/bin"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export MOBILECONV_REDIS_URL="${MOBILECONV_REDIS_URL:-$REDIS_URL}"
export MOBILECONV_DATA_DIR="${MOBILECONV_DATA_DIR:-$ROOT/var}"
export MOBILECONV_BIND="${MOBILECONV_BIND:-127.0.0.1:8000}"
# Local use: callbacks to receivers on this machine are fine.
export MOBILECONV_ALLOW_PRIVATE_CALLBACKS="${MOBILECONV_ALLOW_PRIVATE_CALLBACKS:-true}"
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
LOGS="$MOBILECONV_DATA_DIR/logs"
mkdir -p "$LOGS"

pids=()
cleanup() {
    trap - INT TERM EXIT
    echo
    echo "Stopping mobileconv..."
    for pid in "${pids[@]}"; do
        kill -TERM "$pid" 2>/dev/null || true
    done
    wait 2>/dev/null || true
    exit 0
}
trap cleanup INT TERM EXIT

redis_answers() {
    "$BIN/python" -c "import redis, sys; redis.Redis.from_url(sys.argv[1]).ping()" \
        "$MOBILECONV_REDIS_URL" 2>/dev/null
}

if ! redis_answers; then
    port="$("$BIN/python" -c "from urllib.parse import urlsplit; import sys; \
print(urlsplit(sys.argv[1]).port or 6379)" "$MOBILECONV_REDIS_URL")"
    REDIS_SERVER="$(command -v redis-server || echo /usr/bin/redis-server)"
    echo "No Redis at $MOBILECONV_REDIS_URL; starting $REDIS_SERVER on port $port."
    mkdir -p "$MOBILECONV_DATA_DIR/redis"
    "$REDIS_SERVER" --port "$port" --bind 127.0.0.1 --dir "$MOBILECONV_DATA_DIR/redis" \
        --save "" --appendonly yes >"$LOGS/redis.log" 2>&1 &
    pids+=($!)
    for _ in $(seq 50); do redis_answers && break; sleep 0.1; done
    redis_answers || { echo "Redis did not start; see $LOGS/redis.log" >&2; exit 1; }
fi

"$BIN/python" -m celery -A worker.celery_app worker --concurrency 1 \
    --queues "${MOBILECONV_QUEUE_NAME:-mobileconv},${MOBILECONV_WEBHOOK_QUEUE_NAME:-mobileconv-webhooks}" \
    --loglevel INFO --without-gossip --without-mingle >"$LOGS/worker.log" 2>&1 &
pids+=($!)

"$BIN/python" -m gunicorn -c service/gunicorn_conf.py 'service.app:create_app()' \
    >"$LOGS/api.log" 2>&1 &
pids+=($!)

url="http://$MOBILECONV_BIND"
for _ in $(seq 100); do
    "$BIN/python" -c "import requests, sys; requests.get(sys.argv[1], timeout=1).raise_for_status()" \
        "$url/healthz" 2>/dev/null && break
    sleep 0.2
done
echo "mobileconv is running at $url  (docs: $url/docs)"
echo "Logs: $LOGS/{api,worker}.log   Artifacts: $MOBILECONV_DATA_DIR/store"
echo "Press Ctrl-C to stop."
wait -n "${pids[@]}" || true
echo "A mobileconv process exited; see $LOGS." >&2
