//! Single-flight `Group` (contract §4). Under construction.
