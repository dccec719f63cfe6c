#!/usr/bin/env bash
# API docs with warnings as errors (broken links, missing docs).
# Budget 3 min; measured 2 s (after ci/test.sh has built the crate).
source "$(dirname "$0")/lib.sh"
step "rustdoc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p lazyflight --no-deps --all-features --locked
