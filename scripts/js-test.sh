#!/usr/bin/env bash
# End-to-end test with the real supabase-js client (tests/js): builds the server binary, installs
# the locked npm dependencies and runs every *.test.js with node:test. Each test file starts its
# own standalone server on a free port.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build -p realtime-server --bin realtime
cd tests/js
npm ci --no-audit --no-fund --loglevel=error
REALTIME_BIN=../../target/debug/realtime node --test "$@"
