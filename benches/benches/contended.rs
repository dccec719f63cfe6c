//! Contended initialization: N tasks on a 2-worker tokio runtime all call
//! `get_or_init` on one fresh cell. The initializer yields once before it
//! returns, so the other tasks really find it running and queue behind it.
//!
//! For each N in {2, 64, 1024}, one group runs back to back:
//!
//! * `floor`: the same N spawns and joins (and the same `Arc` clones) with
//!   nothing inside the tasks;
//! * `lazyflight`, `tokio`, `async_once_cell`: the stampede on a fresh cell.
//!
//! The figure of interest is each contender's time minus the floor: what the
//! cell itself adds to spawning and joining N tasks.

use std::future::Future;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode};
use tokio::runtime::Runtime;
use tokio::task::yield_now;

const VALUE: u64 = 0x5eed;

/// Spawns `n` copies of `task(cell.clone())` and joins them all.
async fn stampede<C, F, Fut>(n: usize, cell: Arc<C>, task: F)
where
    C: Send + Sync + 'static,
    F: Fn(Arc<C>) -> Fut,
    Fut: Future<Output = u64> + Send + 'static,
{
    let handles: Vec<_> = (0..n).map(|_| tokio::spawn(task(cell.clone()))).collect();
    for h in handles {
        let v = h.await.expect("task panicked");
        debug_assert!(v == VALUE || v == 0);
        black_box(v);
    }
}

fn run(rt: &Runtime, n: usize, contender: &str) {
    rt.block_on(async {
        match contender {
            "floor" => {
                stampede(n, Arc::new(()), |cell| async move {
                    black_box(&cell);
                    0
                })
                .await
            }
            "lazyflight" => {
                stampede(
                    n,
                    Arc::new(lazyflight::ALazy::<u64, ()>::new()),
                    |cell| async move {
                        let init = || async {
                            yield_now().await;
                            Ok(VALUE)
                        };
                        *cell.get_or_init(init).await.unwrap()
                    },
                )
                .await
            }
            "tokio" => {
                stampede(
                    n,
                    Arc::new(tokio::sync::OnceCell::<u64>::new()),
                    |cell| async move {
                        let init = || async {
                            yield_now().await;
                            VALUE
                        };
                        *cell.get_or_init(init).await
                    },
                )
                .await
            }
            "async_once_cell" => {
                stampede(
                    n,
                    Arc::new(async_once_cell::OnceCell::<u64>::new()),
                    |cell| async move {
                        let init = async {
                            yield_now().await;
                            VALUE
                        };
                        *cell.get_or_init(init).await
                    },
                )
                .await
            }
            other => unreachable!("unknown contender {other}"),
        }
    })
}

fn contended_init(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .expect("tokio runtime");
    for n in [2usize, 64, 1024] {
        let mut g = c.benchmark_group(format!("contended_init/{n}"));
        g.warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(2))
            .sample_size(30)
            .sampling_mode(SamplingMode::Flat);
        for contender in ["floor", "lazyflight", "tokio", "async_once_cell"] {
            g.bench_with_input(BenchmarkId::from_parameter(contender), &n, |b, &n| {
                b.iter(|| run(&rt, n, contender))
            });
        }
        g.finish();
    }
}

criterion_group!(benches, contended_init);
criterion_main!(benches);
