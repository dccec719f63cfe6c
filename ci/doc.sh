#!/usr/bin/env bash
# API docs with warnings as errors (broken links, missing docs).
# Budget 3 min; measured ~40 s.
source "$(dirname "$0")/lib.sh"
step "rustdoc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p lazyflight --no-deps --all-features --locked
