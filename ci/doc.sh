#!/usr/bin/env bash
# API docs with warnings as errors (broken links, missing docs), and the
# docs.rs build (nightly rustdoc with `--cfg docsrs`, as docs.rs runs it, so a
# nightly-only attribute that nightly no longer accepts fails here first).
# Budget 3 min; measured 2 s for the stable build (after ci/test.sh has built
# the crate) and 20 s for the docs.rs one.
source "$(dirname "$0")/lib.sh"
step "rustdoc -D warnings"
RUSTDOCFLAGS="-D warnings" cargo doc -p lazyflight --no-deps --all-features --locked
step "rustdoc as docs.rs runs it (nightly, --cfg docsrs)"
need_nightly doc
RUSTDOCFLAGS="-D warnings --cfg docsrs" CARGO_TARGET_DIR=target/docsrs \
    cargo +nightly doc -p lazyflight --no-deps --all-features --locked
