#!/bin/bash
# Envoy's entry point in the compose variant: Envoy exits within milliseconds of SIGTERM and cuts
# the requests in flight. On SIGTERM (docker compose stop/down) this asks the admin interface to
# drain the listeners first (POST /drain_listeners?graceful: answers carry Connection: close /
# GOAWAY for --drain-time-s, then the listeners close), waits ENVOY_DRAIN_SECONDS, then stops
# Envoy. The admin interface is on loopback; bash's /dev/tcp needs no curl in the image.
#
#   drain-and-stop.sh -c /etc/envoy/envoy.yaml --drain-time-s 10 --drain-strategy immediate
set -u
admin_port="${ENVOY_ADMIN_PORT:-9901}"
drain_s="${ENVOY_DRAIN_SECONDS:-12}"
envoy_bin="${ENVOY_BIN:-envoy}"

"$envoy_bin" "$@" &
pid=$!

drain() {
  trap '' TERM INT
  if exec 3<>"/dev/tcp/127.0.0.1/${admin_port}"; then
    printf 'POST /drain_listeners?graceful HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' >&3
    head -n 1 <&3 >&2
    exec 3<&-
  fi
  sleep "$drain_s"
  kill -TERM "$pid" 2>/dev/null
}
trap drain TERM INT

wait "$pid"  # returns early when the trap runs
wait "$pid"
