//! Stored objects serialized once per version for list responses.
//!
//! A controller that lists a thousand objects a few hundred times a burst made the test server
//! serialize the same unchanged objects again and again: a fifth of the bench process's CPU,
//! taken from the binaries under test on the same machine. What a list returns is unchanged;
//! only the work to write it is shared, as the watch history shares each event's bytes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use serde_json::Value;

/// How many bytes of encodings a generation holds before it becomes the old one.
const GENERATION_BYTES: usize = 32 << 20;

/// Encodings of stored objects, by the address of the stored version.
///
/// The store never changes a stored object in place: every write stores a new `Arc`, so an
/// address names one version of one object. Each entry keeps a clone of its `Arc`, so the
/// allocation cannot be freed and its address reused while the entry exists.
///
/// Two generations bound the memory: entries move from the old generation to the current one
/// when used, and when the current one is full the old one is dropped, with every version no
/// list asked for since.
#[derive(Debug, Default)]
pub struct EncodedObjects {
    generations: Mutex<Generations>,
}

#[derive(Debug, Default)]
struct Generations {
    current: HashMap<usize, (Arc<Value>, Bytes)>,
    current_bytes: usize,
    old: HashMap<usize, (Arc<Value>, Bytes)>,
}

impl EncodedObjects {
    /// `object` as JSON, serialized only the first time this version is asked for.
    pub fn encode(&self, object: &Arc<Value>) -> Result<Bytes, serde_json::Error> {
        let key = Arc::as_ptr(object) as usize;
        if let Some(bytes) = self.lock().take(key) {
            return Ok(bytes);
        }
        // Serialized outside the lock: other lists go on meanwhile.
        let bytes = Bytes::from(serde_json::to_vec(&**object)?);
        self.lock().insert(key, object.clone(), bytes.clone());
        Ok(bytes)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.generations
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How many versions are held (for tests).
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.current.len() + g.old.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Generations {
    /// The encoding of the version at `key`, moved into the current generation if it was old.
    fn take(&mut self, key: usize) -> Option<Bytes> {
        if let Some((_, bytes)) = self.current.get(&key) {
            return Some(bytes.clone());
        }
        let (object, bytes) = self.old.remove(&key)?;
        self.insert(key, object, bytes.clone());
        Some(bytes)
    }

    fn insert(&mut self, key: usize, object: Arc<Value>, bytes: Bytes) {
        self.current_bytes += bytes.len();
        if self.current.insert(key, (object, bytes)).is_none() && self.current_bytes > GENERATION_BYTES {
            self.old = std::mem::take(&mut self.current);
            self.current_bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_version_is_encoded_as_serde_json_writes_it_and_only_once() {
        let encoded = EncodedObjects::default();
        let v1 = Arc::new(json!({"metadata": {"name": "a", "resourceVersion": "1"}, "spec": {"x": "é\"\n"}}));
        let first = encoded.encode(&v1).unwrap();
        assert_eq!(first, serde_json::to_vec(&*v1).unwrap());
        let again = encoded.encode(&v1).unwrap();
        // The same bytes, not a second serialization.
        assert_eq!(first.as_ptr(), again.as_ptr());
        assert_eq!(encoded.len(), 1);
    }

    #[test]
    fn a_new_version_of_an_object_is_encoded_afresh() {
        let encoded = EncodedObjects::default();
        let v1 = Arc::new(json!({"metadata": {"name": "a", "resourceVersion": "1"}}));
        let v2 = Arc::new(json!({"metadata": {"name": "a", "resourceVersion": "2"}}));
        encoded.encode(&v1).unwrap();
        let second = encoded.encode(&v2).unwrap();
        assert_eq!(second, serde_json::to_vec(&*v2).unwrap());
    }

    #[test]
    fn versions_no_list_asks_for_are_dropped_after_two_generations() {
        let encoded = EncodedObjects::default();
        let big = "x".repeat(1 << 20);
        let kept = Arc::new(json!({"metadata": {"name": "kept"}}));
        let dropped = Arc::new(json!({"metadata": {"name": "dropped"}}));
        encoded.encode(&kept).unwrap();
        encoded.encode(&dropped).unwrap();
        let fill = |n: usize| {
            for i in 0..n {
                encoded
                    .encode(&Arc::new(
                        json!({"metadata": {"name": format!("f{i}")}, "data": big}),
                    ))
                    .unwrap();
                // `kept` is listed all along; `dropped` never again.
                encoded.encode(&kept).unwrap();
            }
        };
        fill(2 * (GENERATION_BYTES >> 20) + 2);
        assert!(Arc::strong_count(&kept) > 1, "a version still listed stays held");
        assert_eq!(
            Arc::strong_count(&dropped),
            1,
            "a version not listed for two generations is let go"
        );
        assert!(encoded.len() <= 2 * (GENERATION_BYTES >> 20) + 4);
    }
}
