#!/usr/bin/env bash
# Run a command tree (e.g. `dagster dev`: webserver, daemon, code servers) in its own process
# group and stop the whole group when this script is stopped (SIGTERM, SIGINT, SIGHUP):
# SIGINT first, which `dagster dev` handles by shutting its servers down, then SIGTERM and at
# last SIGKILL for whatever is still running after a grace period. Nothing is orphaned, and
# the port is free when this script has exited.
set -u
grace="${STOP_GRACE_SECONDS:-10}"
set -m # job control: the command gets a process group of its own (pgid = its pid)
"$@" &
child=$!

group_alive() { kill -0 -- "-$child" 2>/dev/null; }

stop_group() {
    trap '' INT TERM HUP
    for signal in INT TERM; do
        kill "-$signal" -- "-$child" 2>/dev/null || break
        for _ in $(seq $((grace * 10))); do
            group_alive || break 2
            sleep 0.1
        done
    done
    group_alive && kill -KILL -- "-$child" 2>/dev/null
    wait "$child" 2>/dev/null
    exit 143
}

trap stop_group INT TERM HUP
wait "$child"
status=$?
group_alive && stop_group # the command exited but left children behind
exit "$status"
