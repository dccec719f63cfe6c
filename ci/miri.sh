#!/usr/bin/env bash
# Miri over the std build's tests: undefined behaviour, leaks, data races on
# real threads. Needs the nightly toolchain with the miri component; installs
# the component when missing and says why it cannot when it cannot (then the
# step is skipped and the gate fails at its end: a skipped check must not
# report green; see ci/all.sh).
# Budget 10 min; measured 143-288 s (229 s at 591a522 and 288 s at 0d037cd, with the crate's own unit tests; sysroot already built; building it adds ~45 s).
# In one lane, 498 s at f41aa3a (2026-11-23: tests 345 s, tests/cache.rs 118 s and
# tests/cache_alloc.rs 56 s of them); in two lanes, 288 s (cold target dir, quiet machine).
source "$(dirname "$0")/lib.sh"
# Flags from MIRIFLAGS are added after the project's (see the end), so a flag
# there could turn a check off or undo -Zmiri-strict-provenance (the later
# flag wins). Refused before anything is built or installed:
# * any -Zmiri-disable-* (Stacked Borrows, validity, alignment, the data-race
#   detector, weak-memory emulation, ...): this step disables no check; and
#   -Zmiri-disable-isolation, which the step does not use either (isolated,
#   a test cannot read the host's clock, environment or files);
# * -Zmiri-ignore-leaks (the leak check is one of the things this step is for);
# * -Zmiri-tree-borrows*: another aliasing model, which accepts code that
#   Stacked Borrows (what this step reports under) rejects;
# * -Zmiri-permissive-provenance: undoes -Zmiri-strict-provenance;
# * -Zmiri-retag-fields*: changes how much Stacked Borrows retags;
# * -Zmiri-deterministic-concurrency and -Zmiri-fixed-schedule: no random
#   preemption and scheduling (and, for the first, no weak memory);
# * -Zmiri-preemption-rate and -Zmiri-compare-exchange-weak-failure-rate
#   below Miri's defaults (0.01 and 0.8): fewer thread switches, fewer
#   spurious compare_exchange_weak failures.
# Everything else (a seed, -Zmiri-many-seeds, tracking, backtraces, ...) is
# honoured.
set -f
for flag in ${MIRIFLAGS:-}; do
    why=
    case $flag in
        -Zmiri-disable-isolation) why="gives the tests the host's clock, environment and files (this step runs them isolated)" ;;
        -Zmiri-disable-*) why="turns a check off" ;;
        -Zmiri-ignore-leaks) why="turns the leak check off" ;;
        -Zmiri-tree-borrows*) why="replaces Stacked Borrows, the aliasing model this step checks" ;;
        -Zmiri-permissive-provenance) why="undoes -Zmiri-strict-provenance" ;;
        -Zmiri-retag-fields*) why="changes what Stacked Borrows retags" ;;
        -Zmiri-deterministic-concurrency | -Zmiri-fixed-schedule) why="turns off random scheduling" ;;
        -Zmiri-preemption-rate=* | -Zmiri-compare-exchange-weak-failure-rate=*)
            value=${flag#*=}
            case $flag in -Zmiri-preemption-rate=*) floor=0.01 ;; *) floor=0.8 ;; esac
            if ! [[ $value =~ ^[0-9]*\.?[0-9]+$ ]]; then
                why="is not a number"
            elif awk -v v="$value" -v f="$floor" 'BEGIN { exit !(v < f) }'; then
                why="is under Miri's default of $floor"
            fi
            ;;
    esac
    if [[ -n $why ]]; then
        echo "miri: MIRIFLAGS has $flag, which $why; the gate refuses it" >&2
        exit 1
    fi
done
set +f
step "miri"
need_nightly miri miri,rust-src
if ! cargo +nightly miri --version >/dev/null 2>&1; then
    echo "miri: component missing on nightly; installing miri and rust-src"
    rustup component add --toolchain nightly miri rust-src ||
        skip miri "the miri component is missing and cannot be installed here (no network to the toolchain server?)"
fi
cargo +nightly miri setup
# Tests that run under Miri: the ones exercising memory and concurrency of the
# library on real threads. Add new primitives' test files here.
MIRI_TESTS=(alazy block_on send_sync seed_alazy task task_local task_collect task_unwind group group_seed singleflight_go cache cache_alloc)
# Not under Miri, and why (each runs natively in ci/test.sh):
echo "miri: not run: tests/peer_bugs.rs (153 s under Miri, which would take the step over its budget;"
echo "      the code paths its scenarios reach are under Miri through tests/group.rs and tests/cache.rs),"
echo "      tests/task_tokio.rs (the tokio executor adapter on a tokio runtime; not tried under Miri),"
echo "      tests/executors.rs (a soak of up to 240,000 callers per test on three executors; not tried under Miri), and the doc tests"
echo "      (examples, run natively by ci/test.sh)"
# `--lib`: the crate's own unit tests (the cache's rehash of a table whose
# key `Hash` panics, which builds a hashbrown table by hand).
args=(--lib)
for t in "${MIRI_TESTS[@]}"; do args+=(--test "$t"); done
# Left out under Miri, and why: these run 5,000-150,000 tasks (hours under
# Miri's interpreter) or measure wall-clock sleeps, which Miri's virtual clock
# does not advance like a real one. They run in ci/test.sh.
MIRI_SKIP=(many_ready ready_chains long_wake_chains sleep_orders sleeping_tasks variadic_collect_all_and)
echo "miri: skipping ${MIRI_SKIP[*]} (large or wall-clock tests; run natively by ci/test.sh)"
echo "miri: ignored under Miri by their own #[cfg_attr(miri, ignore)]: tests/task.rs's test that spawns a child"
echo "      process, and tests/alazy.rs's take_forgets_waiters_of_leaked_futures (it leaks futures on purpose)"
skips=()
for t in "${MIRI_SKIP[@]}"; do skips+=(--skip "$t"); done
# Flags from the environment are added to the project's, never replace them.
export MIRIFLAGS="-Zmiri-strict-provenance ${MIRIFLAGS:-}"
cargo +nightly miri test -p lazyflight "${args[@]}" --no-run
# Two lanes, one per core (the interpreter is single-threaded): the cache's
# tests (about half the run) beside all the others. Each lane's output is
# printed when both are done; either failing fails the step.
lane_a=(--test cache --test cache_alloc)
lane_b=(--lib)
for t in "${MIRI_TESTS[@]}"; do
    case $t in cache | cache_alloc) ;; *) lane_b+=(--test "$t") ;; esac
done
logs=$(mktemp -d)
status_a=0 status_b=0
cargo +nightly miri test -p lazyflight "${lane_a[@]}" -- "${skips[@]}" > "$logs/a" 2>&1 &
pid_a=$!
cargo +nightly miri test -p lazyflight "${lane_b[@]}" -- "${skips[@]}" > "$logs/b" 2>&1 || status_b=$?
wait "$pid_a" || status_a=$?
echo "--- miri lane: tests/cache.rs, tests/cache_alloc.rs (status $status_a)"
cat "$logs/a"
echo "--- miri lane: every other test (status $status_b)"
cat "$logs/b"
rm -rf "$logs"
if ((status_a != 0 || status_b != 0)); then
    echo "miri: FAILED (lane statuses $status_a, $status_b)" >&2
    exit 1
fi
