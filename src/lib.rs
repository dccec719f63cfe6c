#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod alazy;
mod cache;
mod group;
pub mod sync;
pub mod task;
mod unwind;
mod wait_queue;

/// The shared waiter queue, exposed only to the loom and shuttle models so
/// that they can check its protocol directly. Not part of the public API.
#[cfg(any(loom, shuttle))]
#[doc(hidden)]
pub mod __wait_queue {
    pub use crate::wait_queue::{Notify, WaitKey, WaitQueue};
}

pub use alazy::{ALazy, State};
pub use cache::{Cache, CacheBuilder, CacheStats, Clock, ErrorPolicy, ManualClock, SystemClock};
pub use group::{Entry, Group, Leader, Outcome, Recv, Subscriber};
pub use sync::model;
