#!/usr/bin/env bash
# End-to-end test with the real supabase-js client (tests/js): builds the server binary, installs
# the locked npm dependencies and runs every *.test.js with node:test. Each test file starts its
# own server on a free port: standalone, or, for postgres_changes, backed by a throwaway database
# from realtime-testkit's `pg-cluster`.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p realtime-server --bin realtime
cargo build -p realtime-testkit --bin pg-cluster
cd tests/js
npm ci --no-audit --no-fund --loglevel=error
REALTIME_BIN=../../target/debug/realtime PG_CLUSTER_BIN=../../target/debug/pg-cluster node --test "$@"
