#!/usr/bin/env bash
# loom: every model in loom-tests/tests/*.rs, release build with debug
# assertions, in its own target dir (changing RUSTFLAGS rebuilds everything).
#
# Budget: LOOM_MAX_PREEMPTIONS=2. Every model is exhaustive under it (none is
# cut short by a branch or permutation limit); LOOM_MAX_BRANCHES is loom's
# default, written out so the budget is explicit. A model that needs a larger
# or smaller budget sets it in code with `loom::model::Builder` and says why
# (one does: owned_init_completed_while_a_waiter_waker_panics_releases_every_helper,
# three preemptions).
# The per-model executions, times and caught controls of the ALazy and
# waiter-queue models, and the times and controls of the Group models, are in
# loom-tests/README.md; every model's required controls are in
# ci/negative-controls.txt.
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
# Limits that would end an exploration early and still report success, or
# resume one from a file, are not taken from the environment.
unset LOOM_MAX_PERMUTATIONS LOOM_MAX_DURATION LOOM_CHECKPOINT_FILE LOOM_CHECKPOINT_INTERVAL

# Measured on the shared 2-core machine (load 3-6 from other builds): cold
# build + run 1 min 56 s (3 min 35 s under heavier load), 23 s when only the
# library changed. The models themselves, at b5652ba: 14 s in total; alazy
# 15 models 9.5 s, nearly all of it the one with three preemptions (161,659
# executions, 8.5 s alone; the largest of the other ALazy and wait_queue
# models: 702); task 8 models 4.5 s, nearly all of it
# task_wake_absorbed_after_the_runner_saw_notified_still_publishes (4.3 s
# alone); cache 11 models (12 since f8c87ab), group 7, wait_queue 6 and the 2 lazyflight::model
# checks under 0.1 s per binary. Since then (c898d61) task has 10 models:
# the two added (task_last_waker_dropped_racing_a_wake_calls_back_once_with_abandoned,
# task_run_queued_inside_a_run_racing_a_wake_from_another_thread) run in
# 0.01 s each; 12 models since the two collect-abandonment models, which
# run in under 0.05 s each.
# Since the shim's loom Mutex is a channel token (8990542), whose unlock is a
# scheduling point, every model explores more executions. At f7e82b2, quiet
# machine, one test thread: alazy 19 models 32 s (the one with three
# preemptions 30.5 s, 268,864 executions), task 15 models 18 s (two of them
# 8 s each), cache, group, wait_queue and model under 1 s per binary.
# Budget: 10 minutes.
cargo test --release -p lazyflight-loom-tests
