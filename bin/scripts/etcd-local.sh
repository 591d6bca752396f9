#!/usr/bin/env bash
# Starts a local three-member etcd cluster (Debian: apt-get install etcd-server) for
# `chat-bench --etcd`, with its data in a temporary directory under $TMPDIR (default /tmp, where
# chat-bench keeps its replicas' data too: the same disk), every member with etcd's default
# durability (its write-ahead log is fsynced before a put is acknowledged; etcd 3.4 has no flag
# to turn that off). Prints the endpoints; Ctrl-C (or the end of the benchmark command given as
# arguments) stops the members and removes their data.
#
#   bin/scripts/etcd-local.sh target/release/chat-bench --etcd ENDPOINTS --clients 1,8,64
#   (ENDPOINTS is replaced by the endpoints), or without arguments to keep it running.
set -euo pipefail
command -v etcd >/dev/null || { echo "etcd not found: apt-get install etcd-server" >&2; exit 1; }
command -v curl >/dev/null || { echo "curl not found: apt-get install curl" >&2; exit 1; }
dir=$(mktemp -d "${TMPDIR:-/tmp}/etcd-local.XXXXXX")
cluster=""
for i in 0 1 2; do cluster+="${cluster:+,}m$i=http://127.0.0.1:$((23800 + i))"; done
pids=()
stop() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"; }
trap stop EXIT
for i in 0 1 2; do
    etcd --name "m$i" --data-dir "$dir/m$i" \
        --listen-client-urls "http://127.0.0.1:$((23790 + i))" \
        --advertise-client-urls "http://127.0.0.1:$((23790 + i))" \
        --listen-peer-urls "http://127.0.0.1:$((23800 + i))" \
        --initial-advertise-peer-urls "http://127.0.0.1:$((23800 + i))" \
        --initial-cluster "$cluster" --initial-cluster-state new \
        --logger zap --log-level warn >"$dir/m$i.log" 2>&1 &
    pids+=($!)
done
endpoints="http://127.0.0.1:23790,http://127.0.0.1:23791,http://127.0.0.1:23792"
# Every member answers healthy (it sees a leader) within 30 s, or the logs are shown.
healthy() {
    for i in 0 1 2; do
        curl -fs --max-time 1 "http://127.0.0.1:$((23790 + i))/health" 2>/dev/null | grep -q '"health":"true"' ||
            return 1
    done
}
for _ in $(seq 300); do
    if healthy; then break; fi
    sleep 0.1
done
if ! healthy; then
    echo "etcd did not become healthy within 30 s; its logs:" >&2
    tail -n 20 "$dir"/m*.log >&2
    exit 1
fi
echo "etcd endpoints: $endpoints (etcd $(etcd --version | sed -n "s/^etcd Version: //p"), data in $dir)" >&2
if [ $# -gt 0 ]; then
    "${@/ENDPOINTS/$endpoints}"
else
    wait
fi
