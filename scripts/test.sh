#!/usr/bin/env bash
# Install everything the tests need, then run lint, types and the whole test suite.
#   - redis-server and redis-cli (Debian packages) for the engine tests, when missing
#     (redis-cli makes the Redis Cluster the cluster tests start)
#   - nats-server (Debian package) for the NATS broker tests, when missing
#   - nginx (Debian package) in front of two nodes in the cluster fault test
#   - chromium, tmux and promtool (Debian packages) for the operator tools' tests
#   - a virtualenv in .venv with hubbub and its test extras
#   - the Node packages of tests/js (centrifuge-js SDK and ws)
# Safe to run again: each step is skipped or quick when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v redis-server >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-server >/dev/null
    else
        echo "warning: redis-server missing and not root: Redis tests will fail" >&2
    fi
fi

if ! command -v redis-cli >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq redis-tools >/dev/null
    else
        echo "warning: redis-cli missing and not root: the Redis Cluster tests will fail" >&2
    fi
fi

if ! command -v nats-server >/dev/null 2>&1 && [ ! -x /usr/sbin/nats-server ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq nats-server >/dev/null
    else
        echo "warning: nats-server missing and not root: the NATS tests will fail" >&2
    fi
fi

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq nginx >/dev/null
    else
        echo "warning: nginx missing and not root: the cluster fault test will fail" >&2
    fi
fi

# Operator tools under test: Chromium (admin UI and demo page, driven through
# puppeteer-core), tmux (hubbub top), promtool (from Debian's prometheus package:
# the metrics scrape is parsed by it).
missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v tmux >/dev/null 2>&1 || missing+=(tmux)
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq "${missing[@]}" >/dev/null
    else
        echo "warning: ${missing[*]} missing and not root: their tests will fail" >&2
    fi
fi

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

if ! command -v node >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq nodejs npm >/dev/null
    fi
fi
npm ci --prefix tests/js --no-audit --no-fund --loglevel=error
# Node ws, the benchmarks' comparator: its storm tests drive it.
npm ci --prefix benchmarks/servers/node_ws --no-audit --no-fund --loglevel=error

.venv/bin/ruff check src tests benchmarks examples
.venv/bin/ruff format --check src tests benchmarks examples
.venv/bin/mypy src
exec .venv/bin/python -m pytest -q "$@"
