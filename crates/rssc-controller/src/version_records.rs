//! Which AutoscaleSets may hold a deprecated-runner-version record in their status. A runner
//! that completes a job clears its AutoscaleSet's record; reading the AutoscaleSet for that on
//! every finished runner was a round trip per job that almost always found nothing. The
//! AutoscaleSet reconciler (which sees every AutoscaleSet at start and after each change) and
//! the runner that writes a record say when one is there, and a finished runner reads its
//! AutoscaleSet only then. Until the AutoscaleSet reconciler has seen a set after a restart, a
//! record written before it stays until the next job completes after that.

use std::{collections::HashSet, sync::Mutex};

/// AutoscaleSets (`namespace/name`) that may hold a deprecated-runner-version record.
#[derive(Debug, Default)]
pub struct VersionRecords {
    held: Mutex<HashSet<String>>,
}

impl VersionRecords {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        self.held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Notes whether the AutoscaleSet `key` holds a record, as read from it.
    pub fn seen(&self, key: &str, holds_record: bool) {
        let mut held = self.lock();
        if holds_record {
            held.insert(key.to_owned());
        } else {
            held.remove(key);
        }
    }

    /// Whether the AutoscaleSet `key` may hold a record, so a finished runner must look.
    pub fn may_hold(&self, key: &str) -> bool {
        self.lock().contains(key)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_set_may_hold_a_record_from_when_one_is_seen_until_one_is_seen_gone() {
        let records = VersionRecords::default();
        assert!(!records.may_hold("ns/linux"));
        records.seen("ns/linux", true);
        assert!(records.may_hold("ns/linux"));
        assert!(!records.may_hold("ns/other"));
        records.seen("ns/linux", false);
        assert!(!records.may_hold("ns/linux"));
    }
}
