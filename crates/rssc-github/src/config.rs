//! Parsing of `githubConfigUrl` into a scope and the REST API base URL.

use url::Url;

use crate::error::Error;

/// What a config URL points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// `https://<host>/enterprises/<enterprise>`.
    Enterprise(String),
    /// `https://<host>/<org>`.
    Organization(String),
    /// `https://<host>/<owner>/<repo>`.
    Repository {
        /// The owning user or organization.
        owner: String,
        /// The repository name.
        repo: String,
    },
}

/// A parsed `githubConfigUrl`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitHubConfig {
    /// The URL as given (trailing `/` removed), sent to the runner-registration endpoint.
    pub config_url: String,
    /// Enterprise, organization or repository.
    pub scope: Scope,
    /// True for github.com and GHE.com (data residency) hosts, false for GitHub Enterprise Server.
    pub is_hosted: bool,
    /// The REST API base URL, always ending in `/`.
    pub api_base: Url,
}

const VALID_FORMS: &str = "a valid URL looks like https://github.com/ENTERPRISE-OR-ORG (e.g. \
     https://github.com/enterprises/my-enterprise, https://github.com/my-org) or \
     https://github.com/OWNER/REPO, with the GitHub Enterprise Server host in place of github.com";

fn invalid(url: &str, reason: &str) -> Error {
    Error::InvalidConfigUrl {
        url: url.to_owned(),
        reason: format!("{reason}; {VALID_FORMS}"),
    }
}

/// Whether `host` is github.com-like (github.com, www.github.com, github.localhost, `*.ghe.com`).
pub fn is_hosted_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    host == "github.com"
        || host == "www.github.com"
        || host == "github.localhost"
        || host.ends_with(".ghe.com")
}

impl GitHubConfig {
    /// Parses a config URL; GHES behaviour is forced when `GITHUB_ACTIONS_FORCE_GHES` is set.
    pub fn parse(url: &str) -> Result<Self, Error> {
        Self::parse_with(url, std::env::var_os("GITHUB_ACTIONS_FORCE_GHES").is_some())
    }

    /// Parses a config URL; `force_ghes` treats any host as GitHub Enterprise Server.
    pub fn parse_with(url: &str, force_ghes: bool) -> Result<Self, Error> {
        let trimmed = url.trim().trim_end_matches('/');
        let parsed = Url::parse(trimmed).map_err(|e| invalid(url, &format!("not a URL ({e})")))?;
        if parsed.scheme() != "https" && parsed.scheme() != "http" {
            return Err(invalid(url, "the scheme must be https or http"));
        }
        let host = parsed
            .host_str()
            .ok_or_else(|| invalid(url, "the URL has no host"))?
            .to_owned();
        if parsed.query().is_some() || parsed.fragment().is_some() {
            return Err(invalid(url, "the URL must not have a query or fragment"));
        }
        let segments: Vec<String> = parsed
            .path()
            .trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .map(percent_decode)
            .collect();
        let scope = match segments.as_slice() {
            [org] => Scope::Organization(org.clone()),
            [first, ent] if first.eq_ignore_ascii_case("enterprises") => Scope::Enterprise(ent.clone()),
            [owner, repo] => Scope::Repository {
                owner: owner.clone(),
                repo: repo.clone(),
            },
            _ => {
                return Err(invalid(
                    url,
                    "the path must point to an enterprise, organization or repository",
                ));
            }
        };
        let is_hosted = !force_ghes && is_hosted_host(&host);
        let api_base = if is_hosted {
            let host_lc = host.to_ascii_lowercase();
            let api_host = if host_lc == "www.github.com" {
                "api.github.com".to_owned()
            } else {
                format!("api.{host_lc}")
            };
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            Url::parse(&format!("{}://{api_host}{port}/", parsed.scheme()))
        } else {
            let port = parsed.port().map(|p| format!(":{p}")).unwrap_or_default();
            Url::parse(&format!("{}://{host}{port}/api/v3/", parsed.scheme()))
        }
        .map_err(|e| invalid(url, &format!("cannot derive the API URL ({e})")))?;
        Ok(Self {
            config_url: trimmed.to_owned(),
            scope,
            is_hosted,
            api_base,
        })
    }

    /// The REST path (relative to the API base) of the registration-token endpoint for this scope.
    pub fn registration_token_path(&self) -> Vec<String> {
        let mut p: Vec<String> = match &self.scope {
            Scope::Enterprise(e) => vec!["enterprises".into(), e.clone()],
            Scope::Organization(o) => vec!["orgs".into(), o.clone()],
            Scope::Repository { owner, repo } => vec!["repos".into(), owner.clone(), repo.clone()],
        };
        p.extend(["actions", "runners", "registration-token"].map(String::from));
        p
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(hex) = std::str::from_utf8(&bytes[i + 1..i + 3])
            && let Ok(b) = u8::from_str_radix(hex, 16)
        {
            out.push(b);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(u: &str) -> GitHubConfig {
        GitHubConfig::parse_with(u, false).unwrap()
    }

    #[test]
    fn organization_on_github_com() {
        let c = p("https://github.com/my-org/");
        assert_eq!(c.scope, Scope::Organization("my-org".into()));
        assert!(c.is_hosted);
        assert_eq!(c.api_base.as_str(), "https://api.github.com/");
        assert_eq!(c.config_url, "https://github.com/my-org");
    }

    #[test]
    fn enterprise_is_case_insensitive() {
        let c = p("https://github.com/Enterprises/acme");
        assert_eq!(c.scope, Scope::Enterprise("acme".into()));
        assert_eq!(
            c.registration_token_path().join("/"),
            "enterprises/acme/actions/runners/registration-token"
        );
    }

    #[test]
    fn repository_scope() {
        let c = p("https://github.com/owner/repo");
        assert_eq!(
            c.scope,
            Scope::Repository {
                owner: "owner".into(),
                repo: "repo".into()
            }
        );
        assert_eq!(
            c.registration_token_path().join("/"),
            "repos/owner/repo/actions/runners/registration-token"
        );
    }

    #[test]
    fn www_github_com_maps_to_api_github_com() {
        assert_eq!(
            p("https://www.github.com/org").api_base.as_str(),
            "https://api.github.com/"
        );
    }

    #[test]
    fn ghe_com_is_hosted() {
        let c = p("https://tenant.GHE.com/org");
        assert!(c.is_hosted);
        assert_eq!(c.api_base.as_str(), "https://api.tenant.ghe.com/");
    }

    #[test]
    fn github_localhost_is_hosted() {
        assert!(p("http://github.localhost/org").is_hosted);
    }

    #[test]
    fn ghes_uses_api_v3() {
        let c = p("https://ghes.example.com:8443/org/repo");
        assert!(!c.is_hosted);
        assert_eq!(c.api_base.as_str(), "https://ghes.example.com:8443/api/v3/");
    }

    #[test]
    fn force_ghes() {
        let c = GitHubConfig::parse_with("https://github.com/org", true).unwrap();
        assert!(!c.is_hosted);
        assert_eq!(c.api_base.as_str(), "https://github.com/api/v3/");
    }

    #[test]
    fn bad_urls_explain_valid_form() {
        for bad in [
            "https://github.com",
            "https://github.com/a/b/c",
            "not a url",
            "ftp://github.com/org",
            "https://github.com/org?x=1",
        ] {
            let err = GitHubConfig::parse_with(bad, false).unwrap_err();
            let msg = err.to_string();
            assert!(msg.contains("a valid URL looks like"), "{bad}: {msg}");
            assert_eq!(err.category(), "invalid_config");
        }
    }
}
