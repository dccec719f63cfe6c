#!/usr/bin/env bash
# Unit, integration, doc and property tests on the std build (the bench crate
# is only compiled, by ci/bench-build.sh). Budget 8 min; measured 66-107 s
# on a fresh clone before tests/executors.rs, 118 s with it (its soak takes
# about 18 s in each of the two runs below).
source "$(dirname "$0")/lib.sh"
step "cargo test (workspace, default features)"
cargo test --workspace --exclude lazyflight-benches --locked
step "cargo test (library, all features)"
cargo test -p lazyflight --all-features --locked
