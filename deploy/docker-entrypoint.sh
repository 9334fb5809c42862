#!/bin/sh
# Runs before every Switchboard process in the image (api, worker, migrate).
#
# prometheus-client's multiprocess mode keeps one file per process in
# PROMETHEUS_MULTIPROC_DIR and /metrics adds them all up. Files left by an earlier run
# of this container (a restart keeps an emptyDir or a container's /tmp) would be
# counted again, so the directory starts empty, as shared.metrics asks.
set -eu

if [ -n "${PROMETHEUS_MULTIPROC_DIR:-}" ]; then
    mkdir -p "$PROMETHEUS_MULTIPROC_DIR"
    find "$PROMETHEUS_MULTIPROC_DIR" -maxdepth 1 -type f -name '*.db' -delete
fi

exec "$@"
