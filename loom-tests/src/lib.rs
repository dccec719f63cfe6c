//! loom models of lazyflight's primitives live in `tests/`; build them with
//! `RUSTFLAGS="--cfg loom"` (see `ci/loom.sh`). Without the flag they compile
//! to nothing.
