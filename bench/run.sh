#!/usr/bin/env bash
# Run the whole benchmark suite (what `make bench` runs) on the local
# RabbitMQ (127.0.0.1:5672, or the port in RABBITMQ_NODE_PORT) and record
# it in docs/performance.md.
#
# Usage: bench/run.sh [--quick | --render-only] [--output FILE.md] [--plot FILE.png]
#
# It needs `make all build/bench/ceiling` first; `make bench` does both.
# For one worker or one workload at a time, use bench/drain.py (throughput)
# and bench/latency.py (round trips) directly; both take --help.
# Worker logs and the raw figures go to build/bench/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# Rendering the saved figures again and printing the help need no broker.
needs_broker=1
for argument in "$@"; do
    case "$argument" in
        --render-only | -h | --help) needs_broker=0 ;;
    esac
done

PORT=${RABBITMQ_NODE_PORT:-5672}
if [ "$needs_broker" = 1 ] &&
    ! timeout 2 bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" 2>/dev/null; then
    echo "bench/run.sh: no RabbitMQ on 127.0.0.1:$PORT; run scripts/services.sh start" >&2
    exit 1
fi

exec /usr/bin/python3 bench/suite.py "$@"
