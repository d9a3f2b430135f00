#!/usr/bin/env bash
# Benchmark Python Celery's solo worker against build/celeriac on the local
# RabbitMQ (127.0.0.1:5672) and print a markdown table.
#
# Usage: bench/run.sh [-n TASKS] [--workers python,celeriac] [--results none,rpc]
#                     [--loglevel LEVEL] [--timeout SECONDS]
#
# Worker logs go to build/bench/. Without build/celeriac the celeriac runs
# are skipped with a message.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if ! timeout 2 bash -c 'exec 3<>/dev/tcp/127.0.0.1/5672' 2>/dev/null; then
    echo "bench/run.sh: no RabbitMQ on 127.0.0.1:5672; run scripts/services.sh start" >&2
    exit 1
fi

exec /usr/bin/python3 bench/drain.py "$@"
