//! A stored key's `Hash` that panics while its shard's table of values
//! grows: the cache stays consistent, no other key is lost, and nothing
//! user-written is dropped under the shard lock (where a second panic, from a
//! key's `Drop`, would abort the process).

use std::hash::{Hash, Hasher};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};

use lazyflight::sync::future::block_on;
use lazyflight::Cache;

/// While set, a poisoned key's `Hash` and `Drop` panic.
static ARMED: AtomicBool = AtomicBool::new(false);
static POISONED_DROPS: AtomicUsize = AtomicUsize::new(0);

/// Equal and hashed by `id` alone; `poisoned` marks the stored instances
/// whose `Hash` and `Drop` panic while [`ARMED`].
struct Key {
    id: u64,
    poisoned: bool,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Key {}

impl Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        if self.poisoned && ARMED.load(SeqCst) {
            panic!("Hash of a poisoned key");
        }
        self.id.hash(h);
    }
}

impl Drop for Key {
    fn drop(&mut self) {
        if self.poisoned {
            POISONED_DROPS.fetch_add(1, SeqCst);
            if ARMED.load(SeqCst) {
                panic!("Drop of a poisoned key");
            }
        }
    }
}

fn key(id: u64) -> Key {
    Key {
        id,
        poisoned: false,
    }
}

/// Looks `id` up twice: the first call runs the init, the second copies the
/// value into the table of values.
fn stored(cache: &Cache<Key, u64, ()>, k: Key) {
    let id = k.id;
    assert_eq!(
        block_on(cache.get(k, move || async move { Ok(id) })),
        Ok(id)
    );
    assert_eq!(block_on(cache.get(key(id), || async { Err(()) })), Ok(id));
}

#[test]
#[cfg_attr(miri, ignore = "hundreds of thousands of look-ups: minutes under Miri")]
fn a_key_whose_hash_panics_in_a_rehash_is_taken_out_and_no_other_key_is_lost() {
    let cache = Cache::<Key, u64, ()>::new();
    const POISONED: u64 = 64;
    const KEPT: u64 = 8_000 / 16;
    for id in 0..POISONED {
        stored(&cache, Key { id, poisoned: true });
    }
    // Fill every shard's table of values, then take most keys out again:
    // the slots they leave behind are tombstones, so the table later makes
    // room by rehashing in place, hashing every stored key.
    for id in 1_000..9_000 {
        stored(&cache, key(id));
    }
    for id in 1_000..9_000 {
        if id % 16 != 0 {
            assert!(cache.invalidate(&key(id)));
        }
    }
    assert_eq!(cache.len(), (POISONED + KEPT) as usize);
    ARMED.store(true, SeqCst);
    let mut panicked = None;
    for id in 1_000_000..3_000_000 {
        match catch_unwind(AssertUnwindSafe(|| {
            block_on(cache.get(key(id), move || async move { Ok(id) }))
        })) {
            Ok(got) => assert_eq!(got, Ok(id)),
            Err(payload) => {
                panicked = Some(payload);
                break;
            }
        }
        assert_eq!(block_on(cache.get(key(id), || async { Err(()) })), Ok(id));
        assert!(cache.invalidate(&key(id)));
    }
    ARMED.store(false, SeqCst);
    let payload = panicked.expect("a rehash hashed a poisoned key");
    assert_eq!(
        payload.downcast_ref::<&str>(),
        Some(&"Hash of a poisoned key"),
        "the caller sees the `Hash` panic"
    );
    // Every other key stays, with its value.
    for id in (1_000..9_000).filter(|id| id % 16 == 0) {
        assert_eq!(cache.peek(&key(id)), Some(Ok(id)), "key {id} was lost");
    }
    // The poisoned keys of the shard that grew are out (dropped outside the
    // lock, their `Drop`'s panic contained); the rest are still served.
    let left = (0..POISONED)
        .filter(|&id| cache.peek(&key(id)).is_some())
        .count() as u64;
    assert!(left < POISONED, "the key whose `Hash` panicked is out");
    assert_eq!(POISONED_DROPS.load(SeqCst) as u64, POISONED - left);
    assert_eq!(cache.len() as u64, KEPT + left);
    // The shard still works: its keys are found, new ones go in.
    for id in 10_000..12_000 {
        stored(&cache, key(id));
    }
    for id in 10_000..12_000 {
        assert_eq!(cache.peek(&key(id)), Some(Ok(id)));
    }
}
