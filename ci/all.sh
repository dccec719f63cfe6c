#!/usr/bin/env bash
# The whole gate, in order; each step's budget and measured time on a 2-core
# machine is written in its script. Total budget: 25 minutes.
source "$(dirname "$0")/lib.sh"
steps=(fmt shim-discipline clippy test doc loom negative-controls shuttle miri bench-build)
declare -A took
start=$SECONDS
for s in "${steps[@]}"; do
    t0=$SECONDS
    if [ ! -f "ci/$s.sh" ]; then
        echo "ci/$s.sh is missing" >&2
        exit 1
    fi
    bash "ci/$s.sh"
    took[$s]=$((SECONDS - t0))
done
printf '\n==> gate summary\n'
for s in "${steps[@]}"; do printf '%-20s %5ss\n' "$s" "${took[$s]}"; done
printf '%-20s %5ss\n' total $((SECONDS - start))
