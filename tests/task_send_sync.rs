//! Send / Sync / Unpin of every public type of `lazyflight::task` and of
//! every future it returns, as a table checked on the concrete types.

use std::marker::PhantomData;
use std::rc::Rc;

use lazyflight::task::*;

/// Autoref-based probes: on a concrete type, method resolution picks the
/// impl with the bound when it holds, else the fallback on `&Probe`.
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

macro_rules! row {
    ($t:ty, send: $s:expr, sync: $y:expr, unpin: $u:expr) => {{
        let p = Probe::<$t>(PhantomData);
        assert_eq!((&p).send(), $s, "Send of {}", stringify!($t));
        assert_eq!((&p).sync(), $y, "Sync of {}", stringify!($t));
        assert_eq!((&p).unpin(), $u, "Unpin of {}", stringify!($t));
    }};
}

/// Not Send, not Sync, not Unpin: a payload that makes every bound visible.
type Bad = (Rc<u8>, std::marker::PhantomPinned);

#[test]
fn auto_traits_table() {
    //  type                          Send   Sync   Unpin
    row!(Lazy<u8>,                    send: true,  sync: false, unpin: true);
    row!(RescheduleLazy<u8>,          send: true,  sync: false, unpin: true);
    row!(AwaitTry<u8>,                send: true,  sync: false, unpin: true);
    row!(Scheduled<u8>,               send: true,  sync: false, unpin: true);
    row!(ScheduledValue<u8>,          send: true,  sync: false, unpin: true);
    row!(Try<u8>,                     send: true,  sync: false, unpin: true);
    row!(Try<Bad>,                    send: false, sync: false, unpin: false);
    row!(TaskError,                   send: true,  sync: false, unpin: true);
    row!(ScheduleError,               send: true,  sync: false, unpin: true);
    row!(LocalAlreadySet<Lazy<u8>>,   send: true,  sync: false, unpin: true);
    row!(ExecutorRef,                 send: true,  sync: true,  unpin: true);
    row!(SimpleExecutor,              send: true,  sync: true,  unpin: true);
    row!(YieldNow,                    send: true,  sync: true,  unpin: true);
    row!(Sleep,                       send: true,  sync: true,  unpin: true);
    row!(CollectAll<u8>,              send: true,  sync: false, unpin: true);
    row!(CollectAny<u8>,              send: true,  sync: false, unpin: true);
    row!(CollectAnyWith<u8>,          send: true,  sync: false, unpin: true);
    row!(CollectAnyResult<u8>,        send: true,  sync: false, unpin: true);
    row!(CollectAllTuple<(Lazy<u8>, Lazy<u16>)>, send: true, sync: false, unpin: true);
    row!(CollectAnyTuple<(Lazy<u8>, Lazy<u16>)>, send: true, sync: false, unpin: true);
    row!(AnyOf2<u8, u16>,             send: true,  sync: false, unpin: true);
}
