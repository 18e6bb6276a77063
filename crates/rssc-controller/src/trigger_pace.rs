//! Triggers passed on at most once per spacing for each key: the first at once, the ones that
//! come sooner merged into one sent when the spacing has passed.
//!
//! An EphemeralRunnerSet's reconcile lists all its runners, and every change of any runner
//! (created, running, a job record, removed) triggers it. In a burst of a thousand runners that
//! was several hundred lists of up to a thousand runners each: most of the controller's CPU
//! and of the API server's work, growing with runners times changes. A runner change that
//! waits a tenth of a second for the set loses nothing, since the next list shows it.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;

/// When each key last went out, and which keys wait to go out again.
#[derive(Debug)]
pub struct Pacer<K> {
    spacing: Duration,
    last_sent: HashMap<K, Instant>,
    held: HashMap<K, Instant>,
}

impl<K: Hash + Eq + Clone> Pacer<K> {
    /// A pacer that lets each key out at most once per `spacing`.
    pub fn new(spacing: Duration) -> Self {
        Self {
            spacing,
            last_sent: HashMap::new(),
            held: HashMap::new(),
        }
    }

    /// Offers a trigger for `key` at `now`: true if it goes out now; otherwise it is held (merged
    /// with any already held) until [`Pacer::due`] releases it.
    pub fn offer(&mut self, key: K, now: Instant) -> bool {
        if self.held.contains_key(&key) {
            return false;
        }
        match self.last_sent.get(&key) {
            Some(at) if now < *at + self.spacing => {
                let due = *at + self.spacing;
                self.held.insert(key, due);
                false
            }
            _ => {
                self.last_sent.insert(key, now);
                true
            }
        }
    }

    /// The held keys whose spacing has passed at `now`, released (and sent, as far as the
    /// pacer knows) at `now`.
    pub fn due(&mut self, now: Instant) -> Vec<K> {
        let due: Vec<K> = self
            .held
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(key, _)| key.clone())
            .collect();
        for key in &due {
            self.held.remove(key);
            self.last_sent.insert(key.clone(), now);
        }
        // Keys quiet for a whole spacing pass at once next time anyway; forget them.
        let spacing = self.spacing;
        self.last_sent
            .retain(|_, at| now.saturating_duration_since(*at) < spacing);
        due
    }

    /// When the next held key is due, if any is held.
    pub fn next_due(&self) -> Option<Instant> {
        self.held.values().min().copied()
    }
}

/// `triggers` with each key passed on at most once per `spacing` (see [`Pacer`]). The pacing
/// runs as a task that ends when `triggers` ends or the returned stream is dropped.
pub fn paced<K, S>(triggers: S, spacing: Duration) -> impl Stream<Item = K> + Send + 'static
where
    K: Hash + Eq + Clone + Send + 'static,
    S: Stream<Item = K> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut triggers = std::pin::pin!(triggers);
        let mut pacer = Pacer::new(spacing);
        loop {
            let next_due = pacer.next_due();
            let release = async {
                match next_due {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let sent = tokio::select! {
                () = tx.closed() => return,
                () = release => pacer.due(Instant::now()).into_iter().all(|key| tx.send(key).is_ok()),
                trigger = triggers.next() => match trigger {
                    None => return,
                    Some(key) => !pacer.offer(key.clone(), Instant::now()) || tx.send(key).is_ok(),
                },
            };
            if !sent {
                return;
            }
        }
    });
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|key| (key, rx)) })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SPACING: Duration = Duration::from_millis(100);

    #[test]
    fn the_first_trigger_goes_at_once_and_those_within_the_spacing_merge_into_one() {
        let mut pacer = Pacer::new(SPACING);
        let t0 = Instant::now();
        assert!(pacer.offer("a", t0));
        assert!(!pacer.offer("a", t0 + Duration::from_millis(10)));
        assert!(!pacer.offer("a", t0 + Duration::from_millis(50)));
        assert_eq!(pacer.next_due(), Some(t0 + SPACING));
        assert!(pacer.due(t0 + Duration::from_millis(99)).is_empty());
        assert_eq!(pacer.due(t0 + SPACING), vec!["a"], "the held ones go out as one");
        assert_eq!(pacer.next_due(), None);
        // Sent again at t0 + 100 ms: the next trigger within the spacing waits once more.
        assert!(!pacer.offer("a", t0 + Duration::from_millis(150)));
        assert_eq!(pacer.next_due(), Some(t0 + 2 * SPACING));
    }

    #[test]
    fn keys_are_paced_apart_and_a_quiet_key_goes_at_once() {
        let mut pacer = Pacer::new(SPACING);
        let t0 = Instant::now();
        assert!(pacer.offer("a", t0));
        assert!(
            pacer.offer("b", t0 + Duration::from_millis(10)),
            "another key is not held"
        );
        assert!(
            pacer.offer("a", t0 + SPACING),
            "a spacing after the last, at once"
        );
        assert!(pacer.due(t0 + 5 * SPACING).is_empty());
        assert!(
            pacer.offer("b", t0 + 5 * SPACING),
            "a key quiet for long goes at once"
        );
    }

    #[tokio::test]
    async fn the_stream_passes_a_burst_as_two_triggers_and_ends_with_its_input() {
        // Long enough that the first trigger cannot take it on a busy machine.
        let spacing = Duration::from_secs(1);
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<&str>();
        let input = futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|k| (k, rx)) });
        let mut out = std::pin::pin!(paced(input, spacing));
        let start = Instant::now();
        for _ in 0..5 {
            tx.send("set").unwrap();
        }
        assert_eq!(out.next().await, Some("set"));
        assert!(start.elapsed() < spacing, "the first at once");
        assert_eq!(out.next().await, Some("set"));
        assert!(
            start.elapsed() >= spacing,
            "the other four merged, a spacing later"
        );
        drop(tx);
        assert_eq!(out.next().await, None, "ends with its input");
    }
}
