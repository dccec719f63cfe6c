#!/usr/bin/env bash
# The crate builds with the oldest Rust it declares (`rust-version` in
# Cargo.toml, read from there so the two cannot drift), with every feature,
# from the committed lockfile. The library only: the harnesses, the tests and
# the `--cfg loom` / `--cfg shuttle` builds follow their own dependencies'
# floors (loom's `generator` and shuttle's engine need newer compilers).
# Installs that toolchain (minimal profile) when it is missing, or skips with
# the reason when it cannot (and the gate then fails; see ci/all.sh).
# Budget 3 min; measured 2 s with the toolchain installed (a check of the
# library and its four dependencies; installing the toolchain
# adds ~20 s).
source "$(dirname "$0")/lib.sh"
step "msrv"
msrv=$(sed -n 's/^rust-version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)
if [[ -z $msrv ]]; then
    echo "msrv: no rust-version in Cargo.toml" >&2
    exit 1
fi
if ! rustup run "$msrv" rustc --version >/dev/null 2>&1; then
    echo "msrv: no $msrv toolchain; installing it"
    rustup toolchain install "$msrv" --profile minimal ||
        skip msrv "the Rust $msrv toolchain is missing and cannot be installed here (no network to the toolchain server?)"
fi
CARGO_TARGET_DIR=target/msrv cargo "+$msrv" check --locked -p lazyflight --lib --all-features
echo "msrv: lazyflight builds with Rust $msrv"
