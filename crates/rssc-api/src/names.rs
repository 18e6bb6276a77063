//! Deterministic names of the objects rssc derives from a RunnerSet, and the length limits on
//! user-chosen names that keep every derived name a valid DNS label and label value.
//!
//! The CRD schemas enforce the limits (see [`crate::v1alpha1`]), so a name that passes
//! admission always yields valid derived names.

/// Longest DNS label and label value Kubernetes accepts.
pub const MAX_DNS_LABEL_LEN: usize = 63;
/// Characters the API server appends to a `generateName`.
pub const GENERATED_SUFFIX_LEN: usize = 5;

const LISTENER_SUFFIX: &str = "-listener";
const RUNNER_INFIX: &str = "-runner-";

/// Longest RunnerSet name: its runners are named `<runnerset>-runner-<5 chars>`, and that name
/// is also a label value, a Pod name and the runner's name on GitHub.
pub const MAX_RUNNER_SET_NAME_LEN: usize = MAX_DNS_LABEL_LEN - RUNNER_INFIX.len() - GENERATED_SUFFIX_LEN;
/// Longest AutoscaleSet name: it is written into a label value on every runner.
pub const MAX_AUTOSCALE_SET_NAME_LEN: usize = MAX_DNS_LABEL_LEN;

/// Name of the EphemeralRunnerSet a RunnerSet owns: the RunnerSet's own name.
pub fn ephemeral_runner_set(runner_set: &str) -> String {
    runner_set.to_owned()
}

/// Name shared by a RunnerSet's listener Deployment, ServiceAccount, Role, RoleBinding and
/// config Secret (distinct kinds, so one name serves them all).
pub fn listener(runner_set: &str) -> String {
    format!("{runner_set}{LISTENER_SUFFIX}")
}

/// `generateName` of a RunnerSet's EphemeralRunners; the runner Pod and JIT Secret take the
/// EphemeralRunner's full name.
pub fn ephemeral_runner_prefix(runner_set: &str) -> String {
    format!("{runner_set}{RUNNER_INFIX}")
}

/// ServiceAccount (and Role, RoleBinding) that runner Pods use in the `kubernetes` container
/// modes, where the runner creates job Pods.
pub fn runner_kube_mode_account(runner_set: &str) -> String {
    format!("{runner_set}-kube-mode")
}

/// Secret holding the runners' proxy environment (`http_proxy`, `https_proxy`, `no_proxy`),
/// credentials included, so they never appear in a Pod spec.
pub fn runner_proxy_secret(runner_set: &str) -> String {
    format!("{runner_set}-runner-proxy")
}

/// PersistentVolumeClaim of a cache volume, shared by a RunnerSet's runners.
pub fn cache_claim(runner_set: &str, volume: &str) -> String {
    format!("{runner_set}-cache-{volume}")
}

/// Turns any string (a GitHub runner group may contain spaces) into a valid label value.
///
/// Valid values pass through unchanged. Anything else has invalid characters replaced and, so
/// that two different inputs cannot collide, a short hash of the original appended.
pub fn label_value(raw: &str) -> String {
    if is_label_value(raw) {
        return raw.to_owned();
    }
    let hash = format!("{:08x}", fnv1a32(raw.as_bytes()));
    let cleaned: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    let keep = MAX_DNS_LABEL_LEN - hash.len() - 1;
    let head: String = cleaned.chars().take(keep).collect();
    let head = head.trim_matches(|c: char| !c.is_ascii_alphanumeric());
    if head.is_empty() {
        hash
    } else {
        format!("{head}-{hash}")
    }
}

/// Whether `s` is a valid Kubernetes label value (empty is valid).
pub fn is_label_value(s: &str) -> bool {
    s.is_empty()
        || (s.len() <= MAX_DNS_LABEL_LEN
            && s.starts_with(|c: char| c.is_ascii_alphanumeric())
            && s.ends_with(|c: char| c.is_ascii_alphanumeric())
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
}

/// Whether `s` is a valid RFC 1123 DNS label (the rule for most object names we derive).
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_DNS_LABEL_LEN
        && s.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Whether `s` is a valid RFC 1123 DNS subdomain (the rule for Secret, ConfigMap and claim names).
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label.ends_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        })
}

/// 32-bit FNV-1a: tiny, stable across releases and platforms, good enough to keep sanitized
/// label values distinct. Not for anything security-related.
pub fn fnv1a32(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(*b)).wrapping_mul(0x0100_0193)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn longest(len: usize) -> String {
        // Starts and ends with an alphanumeric, as a valid name must.
        "a".repeat(len)
    }

    #[test]
    fn derived_names_of_the_longest_runner_set_fit() {
        let rs = longest(MAX_RUNNER_SET_NAME_LEN);
        let runner = format!(
            "{}{}",
            ephemeral_runner_prefix(&rs),
            "x".repeat(GENERATED_SUFFIX_LEN)
        );
        assert_eq!(runner.len(), MAX_DNS_LABEL_LEN);
        for name in [
            runner,
            listener(&rs),
            ephemeral_runner_set(&rs),
            runner_kube_mode_account(&rs),
            runner_proxy_secret(&rs),
        ] {
            assert!(is_dns_label(&name), "{name} is not a DNS label");
            assert!(is_label_value(&name), "{name} is not a label value");
        }
    }

    #[test]
    fn cache_claims_of_the_longest_names_are_valid_object_names() {
        // Claim names are DNS subdomains (253 characters); volume names are limited to 40.
        let claim = cache_claim(&longest(MAX_RUNNER_SET_NAME_LEN), &longest(40));
        assert!(is_dns_subdomain(&claim), "{claim}");
    }

    #[test]
    fn one_more_character_would_not_fit() {
        let rs = longest(MAX_RUNNER_SET_NAME_LEN + 1);
        let runner = format!(
            "{}{}",
            ephemeral_runner_prefix(&rs),
            "x".repeat(GENERATED_SUFFIX_LEN)
        );
        assert!(!is_dns_label(&runner));
    }

    #[test]
    fn longest_autoscale_set_name_is_a_label_value() {
        assert!(is_label_value(&longest(MAX_AUTOSCALE_SET_NAME_LEN)));
    }

    #[test]
    fn valid_label_values_pass_through() {
        for v in ["default", "linux-x64", "a.b_c", ""] {
            assert_eq!(label_value(v), v);
        }
    }

    #[test]
    fn runner_group_names_become_valid_distinct_label_values() {
        let inputs = [
            "My Group",
            "My-Group",
            "my group!",
            "  ",
            &"g".repeat(200),
            &"é".repeat(40),
        ];
        let outputs: Vec<String> = inputs.iter().map(|s| label_value(s)).collect();
        for (input, out) in inputs.iter().zip(&outputs) {
            assert!(is_label_value(out), "{input:?} gave invalid {out:?}");
            assert!(!out.is_empty());
        }
        assert_ne!(
            outputs[0], outputs[1],
            "sanitizing must not make distinct groups collide"
        );
        assert_eq!(label_value("My Group"), label_value("My Group"), "stable");
    }

    #[test]
    fn fnv1a32_matches_reference_vectors() {
        assert_eq!(fnv1a32(b""), 0x811c_9dc5);
        assert_eq!(fnv1a32(b"a"), 0xe40c_292c);
        assert_eq!(fnv1a32(b"foobar"), 0xbf9c_f968);
    }
}
