//! The `ALazy` example from the async-lazy README, verbatim but for the `use`
//! line, wrapped in a test with assertions on what it computed.

use lazyflight::ALazy;

#[tokio::test]
async fn seed_alazy_example() {
    let lazy = ALazy::new();

    // First access initializes
    let result = lazy.get_or_init(|| async { Ok::<_, ()>(42) }).await;

    // Subsequent access returns cached value (very fast)
    let result2 = lazy.get().unwrap();

    assert_eq!(result, Ok(&42));
    assert_eq!(*result2, 42);
}
