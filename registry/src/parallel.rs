//! Bounded parallelism for blob transfers (pulls, pushes, lazy fetches): a few scoped worker
//! threads take the items in order, and the first error stops the others from starting more.
//! Written by hand because it is twenty lines over `std::thread::scope`; rayon's pool would
//! tie blocking network I/O to the CPU-bound hashing and compression threads.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// Runs `f` on every item with at most `workers` threads; returns the results in item order,
/// or the first error.
pub fn try_for_each<T, R, E>(
    items: &[T],
    workers: usize,
    f: impl Fn(&T) -> Result<R, E> + Sync,
) -> Result<Vec<R>, E>
where
    T: Sync,
    R: Send,
    E: Send,
{
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let per_worker = std::thread::scope(|s| {
        let handles: Vec<_> = (0..workers.max(1).min(items.len()))
            .map(|_| {
                s.spawn(|| -> Result<Vec<(usize, R)>, E> {
                    let mut done = Vec::new();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= items.len() || failed.load(Ordering::Relaxed) {
                            return Ok(done);
                        }
                        match f(&items[i]) {
                            Ok(r) => done.push((i, r)),
                            Err(e) => {
                                failed.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("a transfer worker panicked"))
            .collect::<Vec<_>>()
    });
    let mut all = Vec::with_capacity(items.len());
    for r in per_worker {
        all.extend(r?);
    }
    all.sort_by_key(|(i, _)| *i);
    Ok(all.into_iter().map(|(_, r)| r).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_come_back_in_item_order() {
        let items: Vec<u32> = (0..50).collect();
        let out: Result<Vec<u32>, ()> = try_for_each(&items, 3, |x| Ok(x * 2));
        assert_eq!(out.unwrap(), (0..50).map(|x| x * 2).collect::<Vec<_>>());
    }

    #[test]
    fn the_first_error_stops_new_items_from_starting() {
        let items: Vec<u32> = (0..1000).collect();
        let started = AtomicUsize::new(0);
        let out = try_for_each(&items, 2, |&x| {
            started.fetch_add(1, Ordering::Relaxed);
            if x == 3 {
                Err(x)
            } else {
                Ok(())
            }
        });
        assert_eq!(out, Err(3));
        assert!(started.load(Ordering::Relaxed) < 1000);
    }

    #[test]
    fn no_items_need_no_threads() {
        let out: Result<Vec<()>, ()> = try_for_each(&[] as &[u8], 3, |_| Ok(()));
        assert_eq!(out, Ok(vec![]));
    }
}
