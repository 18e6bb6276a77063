//! Small helpers.

/// FNV-1a, 64 bits: stable identifiers (container IDs, image digests) derived from names.
pub fn fnv64(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// `namespace/name`.
pub fn key(namespace: &str, name: &str) -> String {
    format!("{namespace}/{name}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn fnv_is_stable() {
        assert_eq!(super::fnv64(""), 0xcbf2_9ce4_8422_2325);
        assert_ne!(super::fnv64("a"), super::fnv64("b"));
    }
}
