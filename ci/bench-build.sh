#!/usr/bin/env bash
# The benchmarks must keep compiling; they are run by hand (docs/benchmarks.md).
# Budget 6 min; measured 88-126 s on a fresh clone.
source "$(dirname "$0")/lib.sh"
step "cargo bench --no-run"
cargo bench -p lazyflight-benches --no-run --locked
