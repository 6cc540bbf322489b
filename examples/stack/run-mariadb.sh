#!/bin/sh
set -eu
: "${SVCORCH_STATE_DIR:?run me through svcorch}"
D="$SVCORCH_STATE_DIR/data/mariadb"
# the unix socket path must stay under 108 bytes: keep it short, in the state dir
exec mariadbd --no-defaults --datadir="$D/data" --user=root --port="$MYSQL_PORT" \
    --bind-address=127.0.0.1 --socket="$D/mysqld.sock" --pid-file="$D/mysqld.pid" \
    --skip-name-resolve --skip-log-bin --innodb-log-file-size=8M --innodb-buffer-pool-size=32M
