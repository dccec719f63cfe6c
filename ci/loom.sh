#!/usr/bin/env bash
# loom: every model in loom-tests/tests/*.rs, release build with debug
# assertions, in its own target dir (changing RUSTFLAGS rebuilds everything).
#
# Budget: LOOM_MAX_PREEMPTIONS=2. Every model is exhaustive under it (none is
# cut short by a branch or permutation limit); LOOM_MAX_BRANCHES is loom's
# default, written out so the budget is explicit. A model that needs a larger
# or smaller budget sets it in code with `loom::model::Builder` and says why.
# The per-model executions, times and caught controls are in loom-tests/README.md.
#
# Only the lazyflight-loom-tests package is built under --cfg loom: the
# library's own dev-dependencies (tokio) do not build under loom.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

export RUSTFLAGS="--cfg loom"
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_TARGET_DIR=target/loom
export LOOM_MAX_PREEMPTIONS=2
export LOOM_MAX_BRANCHES=1000

# Measured on the shared 2-core machine: cold build 3 min 35 s (other builds
# running alongside), 1 min 25 s when only the library changed; the models
# themselves run in under 1 s in total (alazy 12 models 0.12 s, wait_queue
# 6 models 0.11 s, the largest 702 executions). Budget: 10 minutes.
cargo test --release -p lazyflight-loom-tests
