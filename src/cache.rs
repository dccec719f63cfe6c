//! Keyed async `Cache` (contract §3). Under construction.
