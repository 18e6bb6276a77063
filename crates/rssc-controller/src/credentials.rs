//! Reading GitHub credentials, proxy credentials and CA bundles out of Secret and ConfigMap
//! data. Pure: callers fetch the objects; errors name the object and the keys tried, never a
//! value.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use rssc_api::{
    listener_config::{ListenerAuth, ListenerProxy},
    v1alpha1::{APP_PRIVATE_KEY_KEYS, AutoscaleSetSpec, ProxyConfig, ProxyServer, SecretKeyRef, TOKEN_KEYS},
};

/// What is wrong with referenced data, in words a person can act on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DataError {
    /// The spec names no credentials (the CRD schema normally prevents this).
    #[error("set exactly one of githubApp or personalAccessToken")]
    NoCredentials,
    /// None of the keys tried is in the object.
    #[error("{object} has no key {keys}")]
    MissingKey {
        /// `Secret ns/name` or `ConfigMap ns/name`.
        object: String,
        /// The keys tried, quoted and joined.
        keys: String,
    },
    /// The value is empty or not UTF-8.
    #[error("{object} key {key:?} is empty or not text")]
    BadValue {
        /// The object.
        object: String,
        /// The key.
        key: String,
    },
}

/// A Secret or ConfigMap's data as text, by key.
pub type Data = BTreeMap<String, String>;

/// Secret data as text (values that are not UTF-8 are left out and reported when asked for).
pub fn secret_text(data: Option<&BTreeMap<String, ByteString>>) -> Data {
    data.into_iter()
        .flatten()
        .filter_map(|(k, v)| String::from_utf8(v.0.clone()).ok().map(|text| (k.clone(), text)))
        .collect()
}

/// The Secret holding the credentials of `spec`, and the keys to try in it.
pub fn credentials_secret(spec: &AutoscaleSetSpec) -> Result<(&SecretKeyRef, Vec<&str>), DataError> {
    let (reference, fallbacks): (&SecretKeyRef, &[&str]) =
        match (&spec.github_app, &spec.personal_access_token) {
            (Some(app), _) => (&app.private_key_secret_ref, &APP_PRIVATE_KEY_KEYS),
            (None, Some(pat)) => (&pat.token_secret_ref, &TOKEN_KEYS),
            (None, None) => return Err(DataError::NoCredentials),
        };
    let keys = match &reference.key {
        Some(key) => vec![key.as_str()],
        None => fallbacks.to_vec(),
    };
    Ok((reference, keys))
}

/// The credentials of `spec` from the text of its Secret (`object` names it in errors).
pub fn credentials(spec: &AutoscaleSetSpec, data: &Data, object: &str) -> Result<ListenerAuth, DataError> {
    let (_, keys) = credentials_secret(spec)?;
    let value = first_value(data, &keys, object)?;
    Ok(match &spec.github_app {
        Some(app) => ListenerAuth::GithubApp {
            client_id: app.client_id.clone(),
            installation_id: app.installation_id,
            private_key: value,
        },
        None => ListenerAuth::Token {
            token: value.trim().to_owned(),
        },
    })
}

fn first_value(data: &Data, keys: &[&str], object: &str) -> Result<String, DataError> {
    let Some((key, value)) = keys.iter().find_map(|k| data.get(*k).map(|v| (*k, v))) else {
        let keys = keys
            .iter()
            .map(|k| format!("{k:?}"))
            .collect::<Vec<_>>()
            .join(" or ");
        return Err(DataError::MissingKey {
            object: object.to_owned(),
            keys,
        });
    };
    if value.trim().is_empty() {
        return Err(DataError::BadValue {
            object: object.to_owned(),
            key: key.to_owned(),
        });
    }
    Ok(value.clone())
}

/// The proxy settings with credentials from each server's Secret (`secrets` maps a Secret name
/// to its text data; a missing entry means the Secret does not exist).
pub fn proxy(
    config: &ProxyConfig,
    secrets: &BTreeMap<String, Data>,
    namespace: &str,
) -> Result<ListenerProxy, DataError> {
    let resolve = |server: &Option<ProxyServer>| -> Result<Option<String>, DataError> {
        let Some(server) = server else { return Ok(None) };
        let Some(secret) = &server.credential_secret_ref else {
            return Ok(Some(server.url.clone()));
        };
        let object = format!("Secret {namespace}/{secret}");
        let data = secrets.get(secret).cloned().unwrap_or_default();
        let user = first_value(&data, &["username"], &object)?;
        let password = first_value(&data, &["password"], &object)?;
        Ok(Some(with_credentials(&server.url, &user, &password)))
    };
    Ok(ListenerProxy {
        http: resolve(&config.http)?,
        https: resolve(&config.https)?,
        no_proxy: config.no_proxy.clone(),
    })
}

/// `scheme://user:password@host:port`, with user and password percent-encoded.
fn with_credentials(url: &str, user: &str, password: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("http", url));
    format!("{scheme}://{}:{}@{rest}", encode(user), encode(password))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The CA bundle under `key` of a ConfigMap's data.
pub fn ca_bundle(data: &Data, key: &str, object: &str) -> Result<String, DataError> {
    first_value(data, &[key], object)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(auth: serde_json::Value) -> AutoscaleSetSpec {
        let mut v =
            json!({"githubConfigURL": "https://github.com/o", "scaleSetName": "s", "runnerImage": "i"});
        v.as_object_mut()
            .unwrap()
            .extend(auth.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn data(pairs: &[(&str, &str)]) -> Data {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn a_token_is_found_under_rssc_key_names_when_no_key_is_given() {
        let s = spec(json!({"personalAccessToken": {"tokenSecretRef": {"name": "t"}}}));
        let auth = credentials(&s, &data(&[("pat", "ghp_x\n")]), "Secret ci/t").unwrap();
        assert_eq!(
            auth,
            ListenerAuth::Token {
                token: "ghp_x".into()
            }
        );
    }

    #[test]
    fn an_explicit_key_is_the_only_one_tried() {
        let s = spec(json!({"personalAccessToken": {"tokenSecretRef": {"name": "t", "key": "mine"}}}));
        let err = credentials(&s, &data(&[("token", "ghp_x")]), "Secret ci/t").unwrap_err();
        assert_eq!(err.to_string(), "Secret ci/t has no key \"mine\"");
    }

    #[test]
    fn an_app_key_and_its_ids() {
        let s = spec(
            json!({"githubApp": {"clientID": "Iv1", "installationID": 5, "privateKeySecretRef": {"name": "a"}}}),
        );
        let auth = credentials(&s, &data(&[("private_key", "PEM")]), "Secret ci/a").unwrap();
        assert_eq!(
            auth,
            ListenerAuth::GithubApp {
                client_id: "Iv1".into(),
                installation_id: 5,
                private_key: "PEM".into()
            }
        );
        let err = credentials(&s, &data(&[]), "Secret ci/a")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"privateKey\" or \"private_key\""), "{err}");
    }

    #[test]
    fn errors_never_show_values() {
        let s = spec(json!({"personalAccessToken": {"tokenSecretRef": {"name": "t"}}}));
        let err = credentials(&s, &data(&[("token", "   ")]), "Secret ci/t")
            .unwrap_err()
            .to_string();
        assert_eq!(err, "Secret ci/t key \"token\" is empty or not text");
    }

    #[test]
    fn proxy_credentials_are_encoded_into_the_url() {
        let config: ProxyConfig = serde_json::from_value(json!({
            "https": {"url": "http://proxy:3128", "credentialSecretRef": "creds"},
            "http": {"url": "http://plain:80"},
            "noProxy": [".svc", "10.0.0.0/8"]
        }))
        .unwrap();
        let secrets = BTreeMap::from([(
            "creds".to_owned(),
            data(&[("username", "me"), ("password", "p@ss:w")]),
        )]);
        let p = proxy(&config, &secrets, "ci").unwrap();
        assert_eq!(p.https.as_deref(), Some("http://me:p%40ss%3Aw@proxy:3128"));
        assert_eq!(p.http.as_deref(), Some("http://plain:80"));
        assert_eq!(p.no_proxy, [".svc", "10.0.0.0/8"]);
        let missing = proxy(&config, &BTreeMap::new(), "ci").unwrap_err().to_string();
        assert_eq!(missing, "Secret ci/creds has no key \"username\"");
    }
}
