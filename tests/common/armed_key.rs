//! A key whose `Drop` panics when it is armed, shared by the `Group` and
//! `Cache` test files that check a panicking key dropped during an unwind.

/// A key whose `Drop` panics if it is armed (`.1`), even while the thread
/// unwinds. Equal keys (same `.0`) need not be alike in that, so a caller
/// can store an armed key and look it up with an unarmed one.
pub(crate) struct ArmedKey(pub(crate) u32, pub(crate) bool);

impl PartialEq for ArmedKey {
    fn eq(&self, other: &Self) -> bool {
        self.0 == other.0
    }
}

impl Eq for ArmedKey {}

impl std::hash::Hash for ArmedKey {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.0.hash(h);
    }
}

impl Drop for ArmedKey {
    fn drop(&mut self) {
        if self.1 {
            panic!("key drop panics");
        }
    }
}
