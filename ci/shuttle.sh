#!/usr/bin/env bash
# shuttle: randomized schedules of 4-16 tasks per execution over one ALazy,
# with aborts, self-cancellation and failing/panicking initializers
# (shuttle-tests/tests/alazy.rs). Release build with debug assertions, so the
# library's debug_assert! transitions are checked too.
#
# Only the `lazyflight-shuttle-tests` package is built under `--cfg shuttle`
# (the library's tokio dev-dependency plays no part), in its own target dir,
# since changing RUSTFLAGS rebuilds everything.
#
# Budget 5 min. Iterations per test and scheduler (random and PCT): 20,000
# (the brief's floor is 10,000); PCT depth 3.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

export RUSTFLAGS="--cfg shuttle"
export CARGO_TARGET_DIR="${LAZYFLIGHT_SHUTTLE_TARGET_DIR:-target/shuttle}"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_PROFILE_RELEASE_OVERFLOW_CHECKS=true
export LAZYFLIGHT_SHUTTLE_ITERATIONS="${LAZYFLIGHT_SHUTTLE_ITERATIONS:-20000}"
export LAZYFLIGHT_SHUTTLE_PCT_DEPTH="${LAZYFLIGHT_SHUTTLE_PCT_DEPTH:-3}"

printf '\n==> shuttle (%s iterations per test, PCT depth %s)\n' \
    "$LAZYFLIGHT_SHUTTLE_ITERATIONS" "$LAZYFLIGHT_SHUTTLE_PCT_DEPTH"
# Measured on the shared 2-core machine: cold build 1m35s + tests 26s (6
# stampedes x 20,000 executions, 4.6-10.6 s each, plus 3 regressions), 2m01s
# in all; warm (library already built) 27-41s.
cargo test --release --locked -p lazyflight-shuttle-tests --test alazy -- --nocapture
