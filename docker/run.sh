#!/bin/sh
# Entrypoint, as /app/run.sh of the official image: raise the open-files limit, then run the
# command (default /app/bin/server). Registry migrations and the SEED_SELF_HOST seed run inside
# the server (and inside `realtime eval` / `realtime migrate`), so they are not repeated here.
set -eu

echo "Open files limit: $(ulimit -n)"
if [ -n "${RLIMIT_NOFILE:-}" ]; then
  # Never fatal: the server applies the limit again itself, capped at the hard limit.
  ulimit -Sn "$RLIMIT_NOFILE" 2>/dev/null || echo "Could not set the open files limit to $RLIMIT_NOFILE"
fi

echo "Starting Realtime"
exec "$@"
