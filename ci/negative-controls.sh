#!/usr/bin/env bash
# Negative controls: prove that the loom suite has teeth.
#
# Each control is a value of `lazyflight_break` (declared in the root
# Cargo.toml's `unexpected_cfgs` list) that breaks one guarantee of the library
# on purpose, at the `broken!("<value>")` sites in src/. For every line of
# ci/negative-controls.txt this script runs the models listed on that line with
# the control switched on; each of them MUST fail. A control that some listed
# model survives fails the script. Before the controls, the same models are run
# with no control and must pass, so that a model which fails for another reason
# cannot pass for a catch.
#
# Usage (from anywhere; paths are relative to the repository root):
#   ci/negative-controls.sh            # the listed models under their control
#   ci/negative-controls.sh --matrix   # also every other model under every
#                                      # control, and print the full matrix
#
# Budget: LOOM_MAX_PREEMPTIONS=2 as in ci/loom.sh (same build flags); each model run is limited to
# LAZYFLIGHT_MODEL_TIMEOUT seconds (default 300). A model that times out is
# not counted as a catch: loom reports deadlocks itself, so a hang means the
# model did not decide.
#
# Build: ONE build of the loom suite for every control, with
# `--cfg loom --cfg lazyflight_break_dynamic`: in that build `broken!("<value>")`
# is true when the LAZYFLIGHT_BREAK variable holds the value, so each control is
# switched on at run time. (`--cfg lazyflight_break="<value>"` switches one on at
# build time, for use by hand; the branch taken is the same.) A build per
# control cost 12-15 s each: 514 s for 35 controls and over 600 s for 47, most
# of the gate's budget; one build costs about what the first of them did.
#
# Measured on the shared 2-core machine, with a build per control: 5 min 48 s
# for 18 controls, 373 s for 36 (d22c194), over 600 s for 47 (9d7e092).
# With one build (2026-11-23, 47 controls, quiet machine, cold target dir): 96 s
# (53 s of build, then 87 model runs of 5-160 ms each). Budget: 5 minutes.
# `--matrix` runs every model under every control: 21 min for 60 models x 47 controls
# (at cfd7c11, LAZYFLIGHT_MODEL_TIMEOUT=30; the table is in loom-tests/README.md).

set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
root=$PWD

matrix=0
case "${1:-}" in
    --matrix) matrix=1 ;;
    "") ;;
    *)
        echo "usage: $0 [--matrix]" >&2
        exit 2
        ;;
esac

list=ci/negative-controls.txt
target_dir=$root/target/loom-neg
timeout_s=${LAZYFLIGHT_MODEL_TIMEOUT:-300}
export LOOM_MAX_PREEMPTIONS=2
export LOOM_MAX_BRANCHES=1000
unset LOOM_MAX_PERMUTATIONS LOOM_MAX_DURATION LOOM_CHECKPOINT_FILE LOOM_CHECKPOINT_INTERVAL
export RUSTFLAGS="--cfg loom --cfg lazyflight_break_dynamic"
unset LAZYFLIGHT_BREAK
# Same build as ci/loom.sh: release with debug assertions.
export CARGO_PROFILE_RELEASE_DEBUG_ASSERTIONS=true
export CARGO_TARGET_DIR=$target_dir
logs=$target_dir/logs
mkdir -p "$logs"

# --- read the list -----------------------------------------------------------
controls=()
declare -A expected=()
while read -r control models; do
    [[ -z $control || $control == \#* ]] && continue
    if [[ -z $models ]]; then
        echo "error: $list: control '$control' lists no model" >&2
        exit 1
    fi
    if ! grep -E "^\s*'cfg\(lazyflight_break, values\(" Cargo.toml | grep -q "\"$control\""; then
        echo "error: $list: control '$control' is not declared in Cargo.toml's lazyflight_break values" >&2
        exit 1
    fi
    if ! grep -rqF "broken!(\"$control\")" src; then
        echo "error: $list: control '$control' is switched nowhere: no broken!(\"$control\") in src/" >&2
        exit 1
    fi
    if [[ -n ${expected[$control]+x} ]]; then
        echo "error: $list: control '$control' appears twice" >&2
        exit 1
    fi
    controls+=("$control")
    expected[$control]=$models
done < "$list"
if [[ ${#controls[@]} == 0 ]]; then
    echo "error: $list defines no control" >&2
    exit 1
fi

# --- building and running ----------------------------------------------------
# Test binaries of the build, and the binary holding each model.
declare -A binary_of=()
all_models=()

# Sets `targets` to the `--test <file>` arguments that build the files defining
# the given models (empty in --matrix mode: every file).
targets=()
targets_for() {
    targets=()
    [[ $matrix == 1 ]] && return 0
    local model files f
    declare -A seen_file=()
    for model in "$@"; do
        files=$(grep -lE "^\s*(pub\s+)?fn ${model}\s*\(" loom-tests/tests/*.rs || true)
        if [[ -z $files ]]; then
            echo "error: $list names '$model', which no loom-tests/tests/*.rs defines" >&2
            exit 1
        fi
        for f in $files; do
            f=$(basename "$f" .rs)
            [[ -n ${seen_file[$f]+x} ]] || targets+=(--test "$f")
            seen_file[$f]=1
        done
    done
}

build() { # build <model>...
    local out
    targets_for "$@"
    out=$(cargo test --release -q -p lazyflight-loom-tests "${targets[@]}" --no-run --message-format=json) || {
        echo "error: the loom suite does not build with --cfg lazyflight_break_dynamic" >&2
        exit 1
    }
    binary_of=()
    all_models=()
    local bin name
    for bin in $(grep -o '"executable":"[^"]*"' <<< "$out" | sed 's/"executable":"//; s/"$//'); do
        while read -r name; do
            [[ -z $name ]] && continue
            if [[ -n ${binary_of[$name]+x} ]]; then
                echo "error: model name '$name' is ambiguous (in ${binary_of[$name]} and $bin)" >&2
                exit 1
            fi
            binary_of[$name]=$bin
            all_models+=("$name")
        done < <("$bin" --list --format terse 2>/dev/null | sed -n 's/: test$//p')
    done
}

# run <label> <model>: 0 passed, 1 failed (the model reported a failure: a
# loom verdict or a failed assertion, as a panic in its log), 2 timed out,
# 3 died without reporting a failure (a signal, an OOM kill, a crash: not a
# catch). Log in $logs/<label>.<model>.log
run() {
    local label=$1 model=$2 bin rc
    bin=${binary_of[$model]:-}
    if [[ -z $bin ]]; then
        echo "error: $list names '$model', which is not a model of the loom suite" >&2
        exit 1
    fi
    rc=0
    # The subshell keeps bash's "Aborted" job notice (loom aborts on a panic
    # inside a destructor) out of the report; the log has the details.
    local control=$label
    [[ $label == baseline ]] && control=
    (LAZYFLIGHT_BREAK=$control timeout "$timeout_s" "$bin" --exact "$model" --test-threads=1 > "$logs/$label.$model.log" 2>&1; exit $?) 2> /dev/null || rc=$?
    case $rc in
        0) return 0 ;;
        124) return 2 ;;
    esac
    # A failure the model reported: the test harness's panic message (loom
    # reports deadlocks and causality violations as panics too). loom may
    # abort afterwards (a panic in a destructor while unwinding); the failure
    # was reported first.
    if grep -q "panicked at" "$logs/$label.$model.log"; then
        return 1
    fi
    LAST_RC=$rc
    return 3
}
LAST_RC=0

# What failed a model: loom's own verdict (a deadlock, a causality
# violation) if it gave one, else the first panic's message. (A model may
# panic on purpose on its way, e.g. a waker that panics; loom's verdict is
# what decided the run.)
reason() {
    local log=$logs/$1.$2.log verdict
    verdict=$(grep -m1 -E "^(deadlock; threads|Causality violation)" "$log" | cut -c1-110 || true)
    if [[ -n $verdict ]]; then
        echo "$verdict"
    else
        grep -m1 -A1 "panicked at" "$log" | tail -n1 | cut -c1-110 || true
    fi
}

ms() { date +%s%3N; }

# --- baseline: the listed models pass on the unbroken build ------------------
baseline_models=()
for control in "${controls[@]}"; do
    for model in ${expected[$control]}; do
        baseline_models+=("$model")
    done
done
t0=$(ms)
build "${baseline_models[@]}"
echo "one build for every control: $(( ($(ms) - t0) / 1000 )) s"
if [[ $matrix == 1 ]]; then
    baseline_models=("${all_models[@]}")
fi
failed=0
declare -A seen=()
declare -A broken=()
for model in "${baseline_models[@]}"; do
    [[ -n ${seen[$model]+x} ]] && continue
    seen[$model]=1
    t=$(ms)
    rc=0
    run baseline "$model" || rc=$?
    if [[ $rc != 0 ]]; then
        if [[ " ${expected[*]} " == *" $model "* ]]; then
            echo "error: model $model fails on the unbroken build; it cannot vouch for a control" >&2
            failed=1
        else
            # Only in --matrix mode: a model no control relies on; leave it
            # out of the matrix (ci/loom.sh reports it).
            echo "warning: model $model fails on the unbroken build; left out of the matrix" >&2
            broken[$model]=1
        fi
        echo "       $(reason baseline "$model")  (log: $logs/baseline.$model.log)" >&2
    else
        printf '  %-60s passes (%d ms)\n' "$model" $(( $(ms) - t ))
    fi
done
if [[ $failed == 1 ]]; then
    exit 1
fi

# --- each control ------------------------------------------------------------
survived=()
declare -A catches=()
for control in "${controls[@]}"; do
    echo "LAZYFLIGHT_BREAK=$control"
    models=(${expected[$control]})
    if [[ $matrix == 1 ]]; then
        for model in "${all_models[@]}"; do
            [[ -n ${broken[$model]+x} ]] && continue
            [[ " ${expected[$control]} " == *" $model "* ]] || models+=("$model")
        done
    fi
    caught_by=()
    for model in "${models[@]}"; do
        listed=0
        [[ " ${expected[$control]} " == *" $model "* ]] && listed=1
        t=$(ms)
        rc=0
        run "$control" "$model" || rc=$?
        took=$(( $(ms) - t ))
        case $rc in
            1)
                caught_by+=("$model")
                catches[$control.$model]=1
                printf '  %-60s CAUGHT it (%d ms): %s\n' "$model" "$took" "$(reason "$control" "$model")"
                ;;
            0)
                if [[ $listed == 1 ]]; then
                    printf '  %-60s SURVIVED: passes under the control (%d ms)\n' "$model" "$took"
                    survived+=("$control/$model")
                else
                    printf '  %-60s passes (%d ms)\n' "$model" "$took"
                fi
                ;;
            2)
                printf '  %-60s TIMED OUT after %s s (not a catch)\n' "$model" "$timeout_s"
                [[ $listed == 1 ]] && survived+=("$control/$model (timed out)")
                ;;
            3)
                printf '  %-60s DIED with status %s and reported no failure (not a catch)\n' "$model" "$LAST_RC"
                [[ $listed == 1 ]] && survived+=("$control/$model (died with status $LAST_RC, no failure reported)")
                ;;
        esac
    done
    if [[ ${#caught_by[@]} == 0 ]]; then
        echo "  no model caught lazyflight_break=\"$control\""
    fi
done

# --- matrix -------------------------------------------------------------------
if [[ $matrix == 1 ]]; then
    echo
    printf '%-60s' "model \\ control"
    for control in "${controls[@]}"; do printf ' %s' "$control"; done
    echo
    for model in "${all_models[@]}"; do
        [[ -n ${broken[$model]+x} ]] && continue
        printf '%-60s' "$model"
        for control in "${controls[@]}"; do
            if [[ -n ${catches[$control.$model]+x} ]]; then
                printf ' %-*s' "${#control}" "caught"
            else
                printf ' %-*s' "${#control}" "-"
            fi
        done
        echo
    done
fi

if [[ ${#survived[@]} != 0 ]]; then
    echo
    echo "FAILED: ${#survived[@]} listed model(s) did not catch their control:" >&2
    printf '  %s\n' "${survived[@]}" >&2
    echo "Strengthen the models (not the control); logs in $logs." >&2
    exit 1
fi
echo
echo "ok: every control in $list was caught by every model listed for it"
