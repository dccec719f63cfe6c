// The checks of `lazyflight::model` itself, shared by the loom suite
// (loom-tests/tests/model.rs) and the shuttle suite
// (shuttle-tests/tests/model.rs), which include this file: the same models
// must hold, and the same race must be found, under either checker.

use lazyflight::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use lazyflight::sync::future::block_on;
use lazyflight::sync::{thread, Arc};
use lazyflight::ALazy;

// Property: two threads that call `get_or_init` on one cell through
// `lazyflight::model` run one initializer and both see its value, in every
// explored schedule.
#[test]
fn model_runs_an_alazy_race_through_the_shim() {
    lazyflight::model(|| {
        let cell = Arc::new(ALazy::<u32, ()>::new());
        let inits = Arc::new(AtomicUsize::new(0));
        let (c, i) = (cell.clone(), inits.clone());
        let t = thread::spawn(move || {
            *block_on(c.get_or_init(|| async move {
                i.fetch_add(1, SeqCst);
                Ok(1)
            }))
            .unwrap()
        });
        let i = inits.clone();
        let mine = *block_on(cell.get_or_init(|| async move {
            i.fetch_add(1, SeqCst);
            Ok(2)
        }))
        .unwrap();
        assert_eq!(mine, t.join().unwrap());
        assert_eq!(inits.load(SeqCst), 1);
    });
}

// Property: `lazyflight::model` explores schedules rather than running the
// closure once: a lost update (a load and a store where a `fetch_add`
// belongs) is found, and fails the model.
#[test]
#[should_panic(expected = "lost update")]
fn model_finds_a_lost_update() {
    lazyflight::model(|| {
        let n = Arc::new(AtomicUsize::new(0));
        let n2 = n.clone();
        let t = thread::spawn(move || {
            let v = n2.load(SeqCst);
            n2.store(v + 1, SeqCst);
        });
        let v = n.load(SeqCst);
        n.store(v + 1, SeqCst);
        t.join().unwrap();
        assert_eq!(n.load(SeqCst), 2, "lost update");
    });
}
