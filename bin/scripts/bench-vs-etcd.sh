#!/usr/bin/env bash
# This project against etcd, in the same runs: builds chat-bench with the etcd driver, then runs
# it RUNS times (default 3) against a fresh local three-member etcd (etcd-local.sh), each run
# printing a `chat` and an `etcd` row per client count, the fdatasync floor and the load average.
# Needs Debian's etcd-server and protobuf-compiler (installed here if apt-get is there).
#
#   bin/scripts/bench-vs-etcd.sh            # 3 runs of --clients 1,8,64 --seconds 5 --warmup 1
#   RUNS=1 bin/scripts/bench-vs-etcd.sh --clients 1,64 --seconds 10   # other chat-bench options
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v etcd >/dev/null || ! command -v protoc >/dev/null; then
    apt-get install -y etcd-server protobuf-compiler
fi
nice -n 10 cargo build --release -p chat-bin --features etcd --bin chat-bench
[ $# -gt 0 ] || set -- --clients 1,8,64 --seconds 5 --warmup 1
for run in $(seq "${RUNS:-3}"); do
    echo "== run $run of ${RUNS:-3}; $(uptime)"
    bin/scripts/etcd-local.sh target/release/chat-bench --etcd ENDPOINTS "$@"
done
