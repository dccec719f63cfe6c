#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod alazy;
mod cache;
mod group;
pub mod sync;
pub mod task;
mod wait_queue;

pub use alazy::{ALazy, State};
pub use sync::model;
