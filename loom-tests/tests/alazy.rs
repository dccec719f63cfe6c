#![cfg(loom)]
use lazyflight::sync::future::block_on;
use lazyflight::sync::{thread, Arc};
use lazyflight::ALazy;

// Property: two callers race; exactly one initializer runs and both see its value.
#[test]
fn two_callers_one_init() {
    loom::model(|| {
        let cell = Arc::new(ALazy::<usize, ()>::new());
        let runs = Arc::new(lazyflight::sync::atomic::AtomicUsize::new(0));
        let (c, r) = (cell.clone(), runs.clone());
        let t = thread::spawn(move || {
            *block_on(c.get_or_init(|| async move { Ok(r.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 10) })).unwrap()
        });
        let r = runs.clone();
        let a = *block_on(cell.get_or_init(|| async move { Ok(r.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 10) })).unwrap();
        let b = t.join().unwrap();
        assert_eq!(a, b);
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 1);
    });
}
