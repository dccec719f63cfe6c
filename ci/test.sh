#!/usr/bin/env bash
# Unit, integration, doc and property tests on the std build (the bench crate
# is only compiled, by ci/bench-build.sh). Budget 8 min; measured 66-107 s
# on a fresh clone.
source "$(dirname "$0")/lib.sh"
step "cargo test (workspace, default features)"
cargo test --workspace --exclude lazyflight-benches --locked
step "cargo test (library, all features)"
cargo test -p lazyflight --all-features --locked
