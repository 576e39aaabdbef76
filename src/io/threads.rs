//! Short parallel bursts inside one stage (encoding a file's columns, gathering a table's
//! columns), and how many cores there are. Sharing cores *between* stages is the engine's
//! (`pipeline::cores`).

/// `f` over `items` on up to `threads` scoped threads (item i on thread i mod threads); the
/// results come back in item order. For short bursts of independent work inside a stage:
/// encoding a file's columns, gathering a table's columns.
pub fn map_on_threads<T: Send, R: Send>(items: Vec<T>, threads: usize, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let count = items.len();
    let threads = threads.clamp(1, count.max(1));
    let mut shares: Vec<Vec<(usize, T)>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, item) in items.into_iter().enumerate() {
        shares[i % threads].push((i, item));
    }
    let f = &f;
    let done: Vec<Vec<(usize, R)>> = std::thread::scope(|scope| {
        let handles: Vec<_> = shares.into_iter().map(|share| scope.spawn(move || share.into_iter().map(|(i, item)| (i, f(item))).collect())).collect();
        // A panic in `f` is a bug: pass it on.
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut out: Vec<Option<R>> = (0..count).map(|_| None).collect();
    for (i, r) in done.into_iter().flatten() {
        out[i] = Some(r);
    }
    out.into_iter().map(|r| r.expect("every item was mapped")).collect()
}

/// The machine's cores, as the standard library sees them (cgroup limits included).
pub fn available() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
