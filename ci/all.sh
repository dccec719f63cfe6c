#!/usr/bin/env bash
# The whole gate, in order; each step's budget and measured time on a 2-core
# machine is written in its script. Total budget: 25 minutes; measured 531-728 s (534 s at 7497018, 664 s at 5a575db, 706 s at bd35722)
# for the whole gate on a fresh clone.
source "$(dirname "$0")/lib.sh"
steps=(fmt shim-discipline clippy test doc loom negative-controls shuttle miri bench-build)
declare -A took
skipped=0
start=$SECONDS
for s in "${steps[@]}"; do
    t0=$SECONDS
    if [ ! -f "ci/$s.sh" ]; then
        echo "ci/$s.sh is missing" >&2
        exit 1
    fi
    status=0
    bash "ci/$s.sh" || status=$?
    case $status in
        0) took[$s]="$((SECONDS - t0))s" ;;
        3) took[$s]="SKIPPED (see its output above for why)"; skipped=$((skipped + 1)) ;;
        *) echo "ci/$s.sh failed with status $status" >&2; exit "$status" ;;
    esac
done
printf '\n==> gate summary\n'
for s in "${steps[@]}"; do printf '%-20s %s\n' "$s" "${took[$s]}"; done
printf '%-20s %ss\n' total $((SECONDS - start))
# A skipped check must not report green: the other steps still run, and the
# gate fails at the end unless skips were asked for by name.
if [ "$skipped" -gt 0 ]; then
    if [ "${LAZYFLIGHT_ALLOW_SKIP:-0}" = 1 ]; then
        echo "gate: passed with $skipped step(s) SKIPPED (LAZYFLIGHT_ALLOW_SKIP=1)" >&2
    else
        echo "gate: FAILED: $skipped step(s) SKIPPED; set LAZYFLIGHT_ALLOW_SKIP=1 to accept that" >&2
        exit 3
    fi
fi
