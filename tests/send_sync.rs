//! Send / Sync / Unpin of every public type and every returned future, as one
//! table: each row states the expected auto traits and the test checks them
//! (positively and negatively) on the concrete type.
#![allow(clippy::disallowed_types)]

use std::cell::Cell;
use std::marker::PhantomData;
use std::rc::Rc;

use lazyflight::task::*;
use lazyflight::{
    ALazy, Cache, CacheBuilder, CacheStats, Entry, ErrorPolicy, Group, Leader, ManualClock,
    Outcome, Recv, State, Subscriber, SystemClock,
};

/// Autoref-based probes: on a concrete type, method resolution picks the
/// inherent-trait impl with the bound when it holds, else the fallback.
struct Probe<T: ?Sized>(PhantomData<T>);

trait YesSend {
    fn send(&self) -> bool {
        true
    }
}
impl<T: ?Sized + Send> YesSend for Probe<T> {}
trait NoSend {
    fn send(&self) -> bool {
        false
    }
}
impl<T: ?Sized> NoSend for &Probe<T> {}

trait YesSync {
    fn sync(&self) -> bool {
        true
    }
}
impl<T: ?Sized + Sync> YesSync for Probe<T> {}
trait NoSync {
    fn sync(&self) -> bool {
        false
    }
}
impl<T: ?Sized> NoSync for &Probe<T> {}

trait YesUnpin {
    fn unpin(&self) -> bool {
        true
    }
}
impl<T: ?Sized + Unpin> YesUnpin for Probe<T> {}
trait NoUnpin {
    fn unpin(&self) -> bool {
        false
    }
}
impl<T: ?Sized> NoUnpin for &Probe<T> {}

fn probe_of<T>(_: &T) -> Probe<T> {
    Probe(PhantomData)
}

/// `row!(name, expr_of_type_T, send, sync, unpin)` checks a value's type.
macro_rules! row {
    ($table:ident, $name:expr, $value:expr, $send:expr, $sync:expr, $unpin:expr) => {{
        let v = $value;
        let p = probe_of(&v);
        let got = ((&p).send(), (&p).sync(), (&p).unpin());
        $table.push(($name, got, ($send, $sync, $unpin)));
        drop(v);
    }};
}

macro_rules! type_row {
    ($table:ident, $t:ty, $send:expr, $sync:expr, $unpin:expr) => {{
        let p = Probe::<$t>(PhantomData);
        let got = ((&p).send(), (&p).sync(), (&p).unpin());
        $table.push((stringify!($t), got, ($send, $sync, $unpin)));
    }};
}

/// Not Send, not Sync, not Unpin: a payload that makes every bound visible.
type Bad = (Rc<u8>, std::marker::PhantomPinned);
type IoErr = std::io::Error;

#[rustfmt::skip]
#[test]
fn send_sync_unpin_table() {
    // (name, observed (Send, Sync, Unpin), expected)
    type Row = (&'static str, (bool, bool, bool), (bool, bool, bool));
    let mut table: Vec<Row> = Vec::new();

    // ALazy                                         Send   Sync   Unpin
    type_row!(table, ALazy<u32, String>,             true,  true,  true);
    type_row!(table, ALazy<Cell<u32>, ()>,           true,  false, true);
    type_row!(table, ALazy<u32, Cell<u8>>,           true,  false, true);
    type_row!(table, ALazy<Rc<u32>, ()>,             false, false, true);
    type_row!(table, State,                          true,  true,  true);
    let cell = ALazy::<u32, String>::new();
    row!(table, "ALazy::get_or_init future", cell.get_or_init(|| async { Ok(1) }),
                                                     true,  true,  false);
    row!(table, "ALazy::get_or_init_owned future", cell.get_or_init_owned(|| async { Ok(1) }),
                                                     true,  true,  false);
    let unsync = ALazy::<Cell<u32>, ()>::new();
    row!(table, "ALazy<Cell<_>>::get_or_init future", unsync.get_or_init(|| async { Ok(Cell::new(1)) }),
                                                     false, false, false);
    // (A future whose initializer holds an `Rc` across an await is !Send too,
    // but the compiler reports that as an error at the probe instead of
    // letting it fall back, so that row cannot be checked here.)

    // Group
    type_row!(table, Group<String, Vec<u8>, IoErr>,   true,  true,  true);
    type_row!(table, Leader<String, Vec<u8>, IoErr>,  true,  true,  true);
    type_row!(table, Subscriber<Vec<u8>, IoErr>,      true,  true,  true);
    type_row!(table, Recv<Vec<u8>, IoErr>,            true,  true,  true);
    type_row!(table, Entry<String, Vec<u8>, IoErr>,   true,  true,  true);
    type_row!(table, Outcome<Vec<u8>, IoErr>,         true,  true,  true);
    type_row!(table, Group<String, Rc<u8>, ()>,       false, false, true);
    let group = Group::<String, u8, ()>::new();
    row!(table, "Group::run future", group.run("k".into(), || async { Ok(1) }),
                                                     true,  true,  false);

    // Cache
    type_row!(table, Cache<String, Vec<u8>, String>,  true,  true,  true);
    type_row!(table, CacheBuilder<String, Vec<u8>, String>, true, true, true);
    type_row!(table, CacheStats,                     true,  true,  true);
    type_row!(table, ErrorPolicy,                    true,  true,  true);
    type_row!(table, SystemClock,                    true,  true,  true);
    type_row!(table, ManualClock,                    true,  true,  true);
    let cache = Cache::<String, u8, ()>::new();
    row!(table, "Cache::get future", cache.get("k".into(), || async { Ok(1) }),
                                                     true,  true,  false);
    row!(table, "Cache::get_owned future", cache.get_owned("k".into(), || async { Ok(1) }),
                                                     true,  true,  false);

    // task
    type_row!(table, Lazy<u8>,                       true,  false, true);
    type_row!(table, RescheduleLazy<u8>,             true,  false, true);
    type_row!(table, AwaitTry<u8>,                   true,  false, true);
    type_row!(table, Scheduled<u8>,                  true,  false, true);
    type_row!(table, ScheduledValue<u8>,             true,  false, true);
    type_row!(table, Try<u8>,                        true,  false, true);
    type_row!(table, Try<Bad>,                       false, false, false);
    type_row!(table, TaskError,                      true,  false, true);
    type_row!(table, ScheduleError,                  true,  true,  true);
    type_row!(table, LocalAlreadySet<Lazy<u8>>,      true,  false, true);
    type_row!(table, ExecutorRef,                    true,  true,  true);
    type_row!(table, SimpleExecutor,                 true,  true,  true);
    type_row!(table, YieldNow,                       true,  true,  true);
    type_row!(table, Sleep,                          true,  true,  true);
    type_row!(table, CollectAll<u8>,                 true,  false, true);
    type_row!(table, CollectAny<u8>,                 true,  false, true);
    type_row!(table, CollectAnyWith<u8>,             true,  false, true);
    type_row!(table, CollectAnyResult<u8>,           true,  false, true);
    type_row!(table, CollectAllTuple<(Lazy<u8>, Lazy<u16>)>, true, false, true);
    type_row!(table, CollectAnyTuple<(Lazy<u8>, Lazy<u16>)>, true, false, true);
    type_row!(table, AnyOf1<u8>,                     true,  false, true);
    type_row!(table, AnyOf2<u8, u16>,                true,  false, true);
    type_row!(table, AnyOf3<u8, u8, u8>,             true,  false, true);
    type_row!(table, AnyOf4<u8, u8, u8, u8>,         true,  false, true);
    type_row!(table, AnyOf5<u8, u8, u8, u8, u8>,     true,  false, true);
    type_row!(table, AnyOf6<u8, u8, u8, u8, u8, u8>, true,  false, true);
    type_row!(table, AnyOf7<u8, u8, u8, u8, u8, u8, u8>, true, false, true);
    type_row!(table, AnyOf8<u8, u8, u8, u8, u8, u8, u8, u8>, true, false, true);
    #[cfg(feature = "tokio")]
    type_row!(table, TokioExecutor,                  true,  true,  true);

    // The sync shim's own types (std build), as std's
    type_row!(table, lazyflight::sync::Mutex<u8>,    true,  true,  true);
    type_row!(table, lazyflight::sync::Mutex<Cell<u8>>, true, true, true);
    type_row!(table, lazyflight::sync::Mutex<Rc<u8>>, false, false, true);
    type_row!(table, lazyflight::sync::MutexGuard<'static, u8>, false, true, true);
    type_row!(table, lazyflight::sync::MutexGuard<'static, Cell<u8>>, false, false, true);
    type_row!(table, lazyflight::sync::UnsafeCell<u8>, true, false, true);
    type_row!(table, lazyflight::sync::UnsafeCell<Rc<u8>>, false, false, true);

    let mut failures = Vec::new();
    println!("{:<45} {:>6} {:>6} {:>6}", "type", "Send", "Sync", "Unpin");
    for (name, got, want) in &table {
        println!("{:<45} {:>6} {:>6} {:>6}", name, got.0, got.1, got.2);
        if got != want {
            failures.push(format!("{name}: got {got:?}, want {want:?}"));
        }
    }
    assert!(failures.is_empty(), "auto traits changed:\n{}", failures.join("\n"));
}

/// `ALazy` is unwind safe as `OnceLock` is: a `&ALazy` (a `static` one, say)
/// can be used inside `catch_unwind` without `AssertUnwindSafe`.
#[test]
fn alazy_is_unwind_safe_like_oncelock() {
    fn ref_unwind_safe<T: std::panic::RefUnwindSafe + std::panic::UnwindSafe>() {}
    ref_unwind_safe::<std::sync::OnceLock<u32>>();
    ref_unwind_safe::<ALazy<u32, String>>();
    static CELL: ALazy<u32, ()> = ALazy::new();
    let r = std::panic::catch_unwind(|| {
        lazyflight::sync::future::block_on(CELL.get_or_init(|| async { Ok(7) })).copied()
    });
    assert_eq!(r.unwrap(), Ok(7));
}
