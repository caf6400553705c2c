//! How long calls report what they are doing: [`Event`]s sent to a [`Progress`] (the command line
//! draws bars from them; [`Silent`] ignores them). Fetching, converting, embedding and training
//! all report through it; nothing here holds global state.

use crate::metrics::EpochRecord;

/// A phase of a long task, for progress displays.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Embedding examples through the base (steps: files).
    Embedding,
    /// Embedding augmented copies (steps: none reported; one phase).
    Augmenting,
    /// Training the head (steps: epochs).
    Training,
    /// Downloading a file (steps: bytes; 0 total: size unknown).
    Downloading,
    /// Converting a downloaded original into a model graft runs (one step).
    Converting,
}

impl Phase {
    /// A short name for displays.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Embedding => "embedding",
            Phase::Augmenting => "augmenting",
            Phase::Training => "training",
            Phase::Downloading => "downloading",
            Phase::Converting => "converting",
        }
    }
}

/// What a long task says while it runs.
#[derive(Clone, Copy, Debug)]
pub enum Event<'a> {
    /// A phase starts, with its number of steps (0: unknown).
    Started(Phase, u64),
    /// More steps of the current phase are done (may come from several threads).
    Advanced(u64),
    /// A training epoch ended.
    Epoch(&'a EpochRecord),
    /// The current phase ended.
    Finished(Phase),
    /// One line for the user about what is happening (e.g. what is downloaded and how big it
    /// is), not an error.
    Notice(&'a str),
}

/// Where a long task's [`Event`]s go; any `Fn(Event) + Sync` closure is one.
pub trait Progress: Sync {
    /// Takes one event.
    fn on(&self, event: Event<'_>);
}

impl<F: Fn(Event<'_>) + Sync> Progress for F {
    fn on(&self, event: Event<'_>) {
        self(event)
    }
}

/// Runs `work` as `phase` of `total` steps: `Started` before, `Finished` after (also when it
/// fails); `work` reports its steps through the function it is given.
pub(crate) fn in_phase<R>(
    progress: &dyn Progress,
    phase: Phase,
    total: u64,
    work: impl FnOnce(&(dyn Fn(u64) + Sync)) -> R,
) -> R {
    progress.on(Event::Started(phase, total));
    let result = work(&|n| progress.on(Event::Advanced(n)));
    progress.on(Event::Finished(phase));
    result
}

/// A [`Progress`] that ignores everything.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn on(&self, _: Event<'_>) {}
}
