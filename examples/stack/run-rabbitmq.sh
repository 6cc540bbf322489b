#!/bin/sh
# A private RabbitMQ node: its own HOME (Erlang cookie), mnesia, config and epmd port.
# Calls the real start script, not Debian's /usr/sbin wrapper (that re-runs itself as the
# rabbitmq user with another HOME and cookie).
#
# svcorch must see the node's real exit. By default the real script runs beam in the
# background and ends with `wait "$pid" || true`: a node killed with SIGKILL (or crashed) makes
# the script exit 0, and nothing restarts it. With `detached` set, the script execs erl
# instead, erl execs beam.smp, and so svcorch's child *is* the node: a kill -9 is reported as
# SIGKILL. beam turns SIGTERM into a clean shutdown by itself (rc 0 in about a second).
set -eu
: "${SVCORCH_STATE_DIR:?run me through svcorch}"
R="$SVCORCH_STATE_DIR/data/rabbitmq"
mkdir -p "$R/mnesia" "$R/log"
printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users.guest = true\n' "$AMQP_PORT" > "$R/rabbitmq.conf"
printf '[].\n' > "$R/enabled_plugins"
: > "$R/rabbitmq-env.conf"
for var in $(env | sed -n 's/^\(\(RABBITMQ\|ERL\)_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
export HOME="$R" \
    RABBITMQ_NODENAME="svcorch@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$AMQP_DIST_PORT" \
    RABBITMQ_MNESIA_BASE="$R/mnesia" RABBITMQ_LOG_BASE="$R/log" RABBITMQ_LOGS=- \
    RABBITMQ_CONFIG_FILE="$R/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$R/advanced.config" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$R/enabled_plugins" RABBITMQ_CONF_ENV_FILE="$R/rabbitmq-env.conf" \
    RABBITMQ_PID_FILE="$R/rabbit.pid" ERL_CRASH_DUMP="$R/erl_crash.dump" \
    ERL_EPMD_PORT="$EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1 \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS='-start_epmd false -kernel inet_dist_use_interface {127,0,0,1}'
export detached=true
cd "$R"
exec /usr/lib/rabbitmq/bin/rabbitmq-server
