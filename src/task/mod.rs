//! Lazy tasks (contract §5): `Lazy`, `Try`, executors, `via`, lazy locals,
//! yield, sleep and the collect family. Under construction.
