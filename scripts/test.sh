#!/usr/bin/env bash
# The project's test command: every Rust test (each test binary starts its own throwaway
# PostgreSQL cluster with wal_level=logical), then the supabase-js end-to-end test.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo test --workspace --all-targets

if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
  scripts/js-test.sh
else
  echo "node/npm not found: the supabase-js test needs Node.js 20+ (apt-get install nodejs npm)" >&2
  exit 1
fi
