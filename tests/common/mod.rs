//! Helpers shared by the `Group` test files.

use lazyflight::{Entry, Leader, Subscriber};

/// The leader half of `e`; panics if this caller joined a flight instead.
pub(crate) fn lead<K, T, E>(e: Entry<K, T, E>) -> Leader<K, T, E> {
    match e {
        Entry::Leader(l) => l,
        Entry::Subscriber(_) => panic!("expected to lead"),
    }
}

/// The subscriber half of `e`; panics if this caller leads instead.
pub(crate) fn join<K, T, E>(e: Entry<K, T, E>) -> Subscriber<T, E> {
    match e {
        Entry::Subscriber(s) => s,
        Entry::Leader(_) => panic!("expected to subscribe"),
    }
}
