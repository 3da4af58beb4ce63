#!/usr/bin/env bash
# End-to-end test with the real supabase-js client (tests/js): builds the server binary, installs
# the locked npm dependencies and runs every *.test.js with node:test. Each test file starts its
# own server on a free port: standalone, or, for postgres_changes, backed by a throwaway database
# from realtime-testkit's `pg-cluster`. inspector.test.js drives /usr/bin/chromium with
# playwright-core (`.ci/run` installs Debian's chromium package when it is missing).
# cluster.test.js starts its own redis-server and three servers pointed at it (REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p realtime-server --bin realtime
cargo build -p realtime-testkit --bin pg-cluster
bin_dir="$(realpath -m "${CARGO_TARGET_DIR:-target}")/debug"
cd tests/js
npm ci --no-audit --no-fund --loglevel=error
REALTIME_BIN="$bin_dir/realtime" PG_CLUSTER_BIN="$bin_dir/pg-cluster" node --test "$@"
