#!/usr/bin/env bash
# The test command: set the machine up, then formatting, lints and every test.
# With CI set, tests that need Docker or PostgreSQL fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

bash ci/setup.sh
export PGDRILL_TEST_IMAGE="${PGDRILL_TEST_IMAGE:-pgdrill/postgres-local:15}"

echo "[test] rustfmt"
cargo fmt --all -- --check
echo "[test] clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
echo "[test] tests"
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --locked --no-fail-fast
  # nextest does not run doctests.
  cargo test --workspace --locked --doc
else
  cargo test --workspace --locked --no-fail-fast
fi
