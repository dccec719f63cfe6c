#!/usr/bin/env bash
# Lints, warnings as errors, every target of every workspace member, with and
# without the optional `tokio` feature. Budget 8 min; measured 50 s on a fresh
# clone (dependencies already downloaded), 2 cores.
source "$(dirname "$0")/lib.sh"
step "clippy (default features)"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "clippy (--all-features, library)"
cargo clippy -p lazyflight --all-targets --all-features --locked -- -D warnings
