//! Work spread over every CPU, for the steps where a large policy's time goes: reading its files
//! and writing its maps into the kernel.

/// `work` on contiguous runs of `items`, at most one run per CPU, balanced by `weight` (a file's
/// bytes, a batch's 1); the runs' results in item order. A single item is worked on the calling
/// thread. A worker's panic is the caller's, as it would have been without workers.
pub(crate) fn in_runs<T: Sync, R: Send>(
    items: &[T],
    weight: impl Fn(&T) -> usize,
    work: impl Fn(&[T]) -> R + Sync,
) -> Vec<R> {
    let cpus = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    let workers = cpus.min(items.len());
    if workers <= 1 {
        return vec![work(items)];
    }
    let total: usize = items.iter().map(&weight).sum();
    let share = total.div_ceil(workers).max(1);
    let mut runs: Vec<&[T]> = Vec::with_capacity(workers);
    let (mut start, mut sum) = (0, 0);
    for (i, item) in items.iter().enumerate() {
        sum += weight(item);
        if sum >= share && runs.len() + 1 < workers {
            runs.push(&items[start..=i]);
            (start, sum) = (i + 1, 0);
        }
    }
    runs.push(&items[start..]);
    let work = &work;
    std::thread::scope(|scope| {
        let handles: Vec<_> = runs
            .iter()
            .map(|run| scope.spawn(move || work(run)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::in_runs;

    #[test]
    fn every_item_is_worked_on_once_in_order() {
        let items: Vec<usize> = (0..37).collect();
        let runs = in_runs(&items, |_| 1, <[usize]>::to_vec);
        assert_eq!(runs.concat(), items);
        assert!(runs.iter().all(|r| !r.is_empty()), "no empty run: {runs:?}");
    }

    #[test]
    fn a_single_item_stays_on_the_calling_thread() {
        let caller = std::thread::current().id();
        let runs = in_runs(
            &[7],
            |_| 1,
            |run| (run.to_vec(), std::thread::current().id()),
        );
        assert_eq!(runs, [(vec![7], caller)]);
    }

    #[test]
    fn runs_are_balanced_by_weight() {
        // One heavy item first: with two CPUs or more, it is a run of its own.
        let items = [100, 1, 1, 1, 1, 1, 1, 1, 1, 1];
        let runs = in_runs(&items, |w| *w, <[usize]>::to_vec);
        if runs.len() > 1 {
            assert_eq!(runs[0], [100]);
        }
        assert_eq!(runs.concat(), items);
    }
}
