#!/bin/sh
# A private InfluxDB 1.x: every path and both listeners (HTTP and the backup RPC port) set
# explicitly, so it never touches /var/lib/influxdb or a system instance's 8086/8088.
set -eu
: "${SVCORCH_STATE_DIR:?run me through svcorch}"
I="$SVCORCH_STATE_DIR/data/influxdb"
mkdir -p "$I"
cat > "$I/influxdb.conf" <<CONF
reporting-enabled = false
bind-address = "127.0.0.1:$INFLUX_RPC_PORT"
[meta]
  dir = "$I/meta"
[data]
  dir = "$I/data"
  wal-dir = "$I/wal"
  query-log-enabled = false
[monitor]
  store-enabled = false
[http]
  enabled = true
  bind-address = "127.0.0.1:$INFLUX_PORT"
  log-enabled = false
CONF
# INFLUXDB_* variables would override the file
for var in $(env | sed -n 's/^\(INFLUXDB_[A-Za-z0-9_]*\)=.*/\1/p'); do unset "$var"; done
exec influxd run -config "$I/influxdb.conf" -pidfile "$I/influxd.pid"
