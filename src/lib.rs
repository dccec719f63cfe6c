#![doc = include_str!("../README.md")]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]

/// `broken!("name")`: whether the negative control `name` is switched on.
///
/// A negative control breaks one guarantee on purpose, to show that the
/// loom suite notices (`ci/negative-controls.sh`). It is switched on in
/// one of two ways:
///
/// * at build time, with `--cfg lazyflight_break="name"`: the macro is the
///   constant `true` for that name;
/// * at run time, in a build with `--cfg lazyflight_break_dynamic`: the
///   macro is true for the name held by the `LAZYFLIGHT_BREAK` variable
///   (read once). CI builds the loom suite once this way and runs each
///   control's models with the variable set, instead of one build per
///   control.
///
/// In any other build it is the constant `false`, and the broken branch
/// compiles away.
macro_rules! broken {
    ($name:literal) => {
        (cfg!(lazyflight_break = $name) || $crate::sync::broken_at_run_time($name))
    };
}

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
