#!/usr/bin/env bash
# Runs every cargo-fuzz target briefly (FUZZ_SECONDS each, default 20) from its seed corpus.
# Skips with a message, successfully, when cargo-fuzz is unavailable and cannot be installed,
# or when FUZZ_SMOKE_SKIP=1. A crash fails the script; the reproducer lands in fuzz/artifacts/.
# Long runs: docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

seconds="${FUZZ_SECONDS:-20}"
targets=(serializer_v1 serializer_v2 pgoutput)

skip() {
  echo "fuzz-smoke: SKIPPED: $*" >&2
  exit 0
}

[ "${FUZZ_SMOKE_SKIP:-0}" = 1 ] && skip "FUZZ_SMOKE_SKIP=1"

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "fuzz-smoke: cargo-fuzz not found, installing it from crates.io" >&2
  cargo install cargo-fuzz --locked >/dev/null 2>&1 ||
    skip "cargo-fuzz is not installed and 'cargo install cargo-fuzz' failed (offline?); install it to run the fuzz smoke test"
fi

# cargo-fuzz passes nightly-only flags (-Zsanitizer); on a stable toolchain they are unlocked
# with RUSTC_BOOTSTRAP, which is acceptable for a test-only build.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

cargo fuzz build --debug-assertions

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

for target in "${targets[@]}"; do
  # Run on a scratch copy so new inputs do not dirty the committed seed corpus.
  mkdir -p "$work/$target"
  cp corpus/"$target"/* "$work/$target"/
  echo "fuzz-smoke: $target for ${seconds}s" >&2
  if ! cargo fuzz run --debug-assertions "$target" "$work/$target" -- \
    -max_total_time="$seconds" -print_final_stats=1 >"$work/$target.log" 2>&1; then
    tail -n 60 "$work/$target.log" >&2
    echo "fuzz-smoke: $target FAILED; reproducer in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E '^(Done|stat::number_of_executed_units)' "$work/$target.log" | head -n 1 >&2 || true
done
echo "fuzz-smoke: all targets ran ${seconds}s without a crash" >&2
