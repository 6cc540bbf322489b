#!/bin/sh
# Initialise a private MariaDB datadir once; later runs find it and exit 0 at once.
set -eu
: "${SVCORCH_STATE_DIR:?run me through svcorch}"
D="$SVCORCH_STATE_DIR/data/mariadb"
if [ "${BASE_EXTERNAL:-false}" = "true" ]; then
    echo "BASE_EXTERNAL=true: MySQL is an existing server; nothing to initialise"
    exit 0
fi
if [ -d "$D/data/mysql" ]; then
    echo "datadir $D/data already initialised"
    exit 0
fi
mkdir -p "$D"
rm -rf "$D/data.partial"
# --no-defaults first: /etc/mysql/*.cnf would point at the system server's paths and port
mariadb-install-db --no-defaults --datadir="$D/data.partial" --user=root \
    --auth-root-authentication-method=normal --skip-test-db --skip-name-resolve \
    --innodb-log-file-size=8M
# rename last, so an interrupted init is redone instead of half-used
mv "$D/data.partial" "$D/data"
