//! `lazyflight::model` under `--cfg shuttle`: the entry point downstream crates
//! use runs shuttle's scheduler (PCT by default) for
//! `LAZYFLIGHT_SHUTTLE_ITERATIONS` runs, so a model written against
//! `lazyflight::sync` alone is explored.
#![cfg(shuttle)]

include!("../../loom-tests/tests/common/model_checks.rs");
