//! `lazyflight::model` under `--cfg loom`: the entry point downstream crates
//! use runs `loom::model` (every interleaving within the budget), so a model
//! written against `lazyflight::sync` alone is explored.
#![cfg(loom)]

include!("common/model_checks.rs");
