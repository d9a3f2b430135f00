#!/usr/bin/env bash
# Start, stop or report the local RabbitMQ and Redis that the tests use.
#
# Usage: scripts/services.sh start|stop|status
#
# start   starts RabbitMQ when nothing listens on 127.0.0.1:$RABBITMQ_NODE_PORT
#         (default 5672) and Redis when nothing listens on 127.0.0.1:$REDIS_PORT
#         (default 6379). A service that already listens is left alone.
# stop    stops only the services that an earlier `start` launched, as
#         recorded in the state directory. Servers started by anyone else
#         keep running.
# status  prints whether each port listens and who started the server.
#
# Environment: RABBITMQ_NODE_PORT, RABBITMQ_NODENAME and RABBITMQ_DIST_PORT
# are passed on to rabbitmq-server. REDIS_PORT picks the Redis port.
# CELERIAC_SERVICES_DIR overrides the state directory (default build/services
# in the repository), which holds the notes, pid files and logs.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=${CELERIAC_SERVICES_DIR:-$REPO_ROOT/build/services}
HOST=127.0.0.1
RABBITMQ_PORT=${RABBITMQ_NODE_PORT:-5672}
REDIS_PORT=${REDIS_PORT:-6379}
RABBITMQ_START_TIMEOUT=90
REDIS_START_TIMEOUT=10
STOP_TIMEOUT=60

RABBITMQ_NOTE=$STATE_DIR/rabbitmq.note
RABBITMQ_LOG=$STATE_DIR/rabbitmq.log
REDIS_NOTE=$STATE_DIR/redis.note
REDIS_PID_FILE=$STATE_DIR/redis.pid
REDIS_LOG=$STATE_DIR/redis.log

log() {
    echo "services.sh: $*"
}

fail() {
    echo "services.sh: $*" >&2
    exit 1
}

# Succeed when a TCP connection to HOST:$1 is accepted within 2 seconds.
port_is_listening() {
    timeout 2 bash -c "exec 3<>/dev/tcp/$HOST/$1" 2>/dev/null
}

process_alive() {
    [[ -n "$1" ]] && kill -0 "$1" 2>/dev/null
}

# Print the value of KEY from a note file made of key=value lines.
note_value() {
    local file=$1 key=$2
    sed -n "s/^$key=//p" "$file" | head -n 1
}

# Set ROOT_COMMAND to the prefix that runs a command as root: nothing when
# this script already runs as root, else sudo.
set_root_command() {
    if ((EUID == 0)); then
        ROOT_COMMAND=()
    elif command -v sudo >/dev/null 2>&1; then
        ROOT_COMMAND=(sudo --preserve-env=RABBITMQ_NODE_IP_ADDRESS,RABBITMQ_NODE_PORT,RABBITMQ_NODENAME,RABBITMQ_DIST_PORT)
    else
        fail "RabbitMQ commands must run as root, and sudo is not installed"
    fi
}

rabbitmq_node_name() {
    local name=${RABBITMQ_NODENAME:-rabbit}
    if [[ "$name" != *@* ]]; then
        name="$name@$(hostname -s)"
    fi
    echo "$name"
}

print_rabbitmq_logs() {
    local node=$1
    echo "--- last lines of $RABBITMQ_LOG" >&2
    tail -n 40 "$RABBITMQ_LOG" >&2 || true
    if [[ -r "/var/log/rabbitmq/$node.log" ]]; then
        echo "--- last lines of /var/log/rabbitmq/$node.log" >&2
        tail -n 40 "/var/log/rabbitmq/$node.log" >&2 || true
    fi
}

start_rabbitmq() {
    if port_is_listening "$RABBITMQ_PORT"; then
        log "rabbitmq: $HOST:$RABBITMQ_PORT already listens, not starting another node"
        return 0
    fi
    command -v rabbitmq-server >/dev/null 2>&1 ||
        fail "rabbitmq-server not found; run scripts/deps.sh first"

    local node
    node=$(rabbitmq_node_name)
    log "rabbitmq: starting node $node on $HOST:$RABBITMQ_PORT (log $RABBITMQ_LOG)"

    # The Debian wrapper /usr/sbin/rabbitmq-server switches from root to the
    # rabbitmq user with `su`, which keeps the RABBITMQ_* variables. setsid
    # puts the node in a session of its own, so Ctrl-C in a test run does
    # not reach it, and as root the recorded pid is that session's id.
    set_root_command
    export RABBITMQ_NODE_IP_ADDRESS=$HOST RABBITMQ_NODE_PORT=$RABBITMQ_PORT
    "${ROOT_COMMAND[@]}" setsid rabbitmq-server >"$RABBITMQ_LOG" 2>&1 </dev/null &
    local pid=$!
    printf 'node=%s\nport=%s\npid=%s\n' "$node" "$RABBITMQ_PORT" "$pid" >"$RABBITMQ_NOTE"

    local deadline=$((SECONDS + RABBITMQ_START_TIMEOUT))
    until port_is_listening "$RABBITMQ_PORT"; do
        if ! process_alive "$pid"; then
            rm -f "$RABBITMQ_NOTE"
            print_rabbitmq_logs "$node"
            fail "rabbitmq: rabbitmq-server (pid $pid) exited before $HOST:$RABBITMQ_PORT listened"
        fi
        if ((SECONDS >= deadline)); then
            print_rabbitmq_logs "$node"
            fail "rabbitmq: $HOST:$RABBITMQ_PORT did not listen within ${RABBITMQ_START_TIMEOUT}s; run '$0 stop' to stop the node"
        fi
        sleep 1
    done

    local remaining=$((deadline - SECONDS))
    ((remaining > 5)) || remaining=5
    if ! "${ROOT_COMMAND[@]}" rabbitmqctl -q -n "$node" await_startup --timeout "$remaining" >/dev/null 2>&1; then
        print_rabbitmq_logs "$node"
        fail "rabbitmq: node $node listens on $HOST:$RABBITMQ_PORT but 'rabbitmqctl await_startup' failed"
    fi
    log "rabbitmq: node $node is ready on $HOST:$RABBITMQ_PORT"
}

stop_rabbitmq() {
    if [[ ! -f "$RABBITMQ_NOTE" ]]; then
        log "rabbitmq: not started by this script, leaving it alone"
        return 0
    fi
    local node pid
    node=$(note_value "$RABBITMQ_NOTE" node)
    pid=$(note_value "$RABBITMQ_NOTE" pid)
    if ! process_alive "$pid"; then
        log "rabbitmq: node $node (pid $pid) is no longer running"
        rm -f "$RABBITMQ_NOTE"
        return 0
    fi

    log "rabbitmq: stopping node $node"
    set_root_command
    # `shutdown` returns once the node's OS process has exited.
    if ! "${ROOT_COMMAND[@]}" timeout "$STOP_TIMEOUT" rabbitmqctl -q -n "$node" shutdown; then
        log "rabbitmq: 'rabbitmqctl shutdown' failed for $node, sending SIGTERM to session $pid"
        "${ROOT_COMMAND[@]}" kill -TERM -- "-$pid" 2>/dev/null ||
            "${ROOT_COMMAND[@]}" kill -TERM "$pid" 2>/dev/null || true
    fi

    local deadline=$((SECONDS + STOP_TIMEOUT))
    while process_alive "$pid"; do
        ((SECONDS < deadline)) || fail "rabbitmq: pid $pid still runs ${STOP_TIMEOUT}s after the stop request"
        sleep 1
    done
    rm -f "$RABBITMQ_NOTE"
    log "rabbitmq: node $node stopped"
}

start_redis() {
    if port_is_listening "$REDIS_PORT"; then
        log "redis: $HOST:$REDIS_PORT already listens, not starting another server"
        return 0
    fi
    command -v redis-server >/dev/null 2>&1 ||
        fail "redis-server not found; run scripts/deps.sh first"

    log "redis: starting on $HOST:$REDIS_PORT (log $REDIS_LOG)"
    rm -f "$REDIS_PID_FILE"
    if ! redis-server --bind "$HOST" --port "$REDIS_PORT" --daemonize yes \
        --save '' --appendonly no --dir "$STATE_DIR" \
        --pidfile "$REDIS_PID_FILE" --logfile "$REDIS_LOG"; then
        tail -n 40 "$REDIS_LOG" >&2 || true
        fail "redis: redis-server failed to start"
    fi

    local deadline=$((SECONDS + REDIS_START_TIMEOUT))
    until [[ "$(redis-cli -h "$HOST" -p "$REDIS_PORT" ping 2>/dev/null)" == PONG ]]; do
        if ((SECONDS >= deadline)); then
            tail -n 40 "$REDIS_LOG" >&2 || true
            fail "redis: $HOST:$REDIS_PORT did not reply to PING within ${REDIS_START_TIMEOUT}s"
        fi
        sleep 0.2
    done
    local pid
    pid=$(cat "$REDIS_PID_FILE" 2>/dev/null || true)
    printf 'port=%s\npid=%s\n' "$REDIS_PORT" "$pid" >"$REDIS_NOTE"
    log "redis: ready on $HOST:$REDIS_PORT (pid $pid)"
}

stop_redis() {
    if [[ ! -f "$REDIS_NOTE" ]]; then
        log "redis: not started by this script, leaving it alone"
        return 0
    fi
    local port pid
    port=$(note_value "$REDIS_NOTE" port)
    pid=$(note_value "$REDIS_NOTE" pid)
    if ! process_alive "$pid"; then
        log "redis: pid $pid is no longer running"
        rm -f "$REDIS_NOTE"
        return 0
    fi

    log "redis: stopping pid $pid on $HOST:$port"
    if ! redis-cli -h "$HOST" -p "$port" shutdown nosave >/dev/null 2>&1; then
        kill -TERM "$pid" 2>/dev/null || true
    fi
    local deadline=$((SECONDS + STOP_TIMEOUT))
    while process_alive "$pid"; do
        ((SECONDS < deadline)) || fail "redis: pid $pid still runs ${STOP_TIMEOUT}s after the stop request"
        sleep 0.2
    done
    rm -f "$REDIS_NOTE"
    log "redis: stopped"
}

print_status() {
    local name=$1 port=$2 note=$3 state owner
    if port_is_listening "$port"; then
        state="listens on $HOST:$port"
    else
        state="does not listen on $HOST:$port"
    fi
    if [[ -f "$note" ]] && process_alive "$(note_value "$note" pid)"; then
        owner="started by services.sh (pid $(note_value "$note" pid))"
    else
        owner="not started by services.sh"
    fi
    echo "$name: $state, $owner"
}

main() {
    if (($# != 1)); then
        echo "usage: $0 start|stop|status" >&2
        exit 2
    fi
    mkdir -p "$STATE_DIR"
    case "$1" in
        start)
            start_rabbitmq
            start_redis
            ;;
        stop)
            stop_redis
            stop_rabbitmq
            ;;
        status)
            print_status rabbitmq "$RABBITMQ_PORT" "$RABBITMQ_NOTE"
            print_status redis "$REDIS_PORT" "$REDIS_NOTE"
            ;;
        *)
            echo "usage: $0 start|stop|status" >&2
            exit 2
            ;;
    esac
}

main "$@"
