#!/usr/bin/env bash
# Formatting. Budget 1 min; measured 1 s.
source "$(dirname "$0")/lib.sh"
step "rustfmt --check"
cargo fmt --all -- --check
