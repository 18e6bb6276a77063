//! API errors, rendered as the `Status` objects a real API server returns.

use serde_json::{Value, json};

/// One invalid field, as a `details.causes[]` entry and a line of an `Invalid` message.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    /// Cause reason (`FieldValueInvalid`, `FieldValueRequired`, ...).
    pub reason: &'static str,
    /// Field path, `spec.minRunners` style.
    pub field: String,
    /// The error text without the field path, as the API server formats it.
    pub message: String,
}

impl FieldError {
    /// `field: Invalid value: <value>: <detail>`.
    pub fn invalid(field: &str, value: &Value, detail: &str) -> Self {
        Self {
            reason: "FieldValueInvalid",
            field: field.to_owned(),
            message: format!("Invalid value: {}: {detail}", render_value(value)),
        }
    }

    /// `field: Required value`.
    pub fn required(field: &str) -> Self {
        Self {
            reason: "FieldValueRequired",
            field: field.to_owned(),
            message: "Required value".to_owned(),
        }
    }

    /// `field: Unsupported value: "x": supported values: "a", "b"`.
    pub fn not_supported(field: &str, value: &Value, allowed: &[Value]) -> Self {
        let allowed: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        Self {
            reason: "FieldValueNotSupported",
            field: field.to_owned(),
            message: format!(
                "Unsupported value: {}: supported values: {}",
                value,
                allowed.join(", ")
            ),
        }
    }

    /// `field: Too long: may not be more than N bytes`.
    pub fn too_long(field: &str, max: u64) -> Self {
        Self {
            reason: "FieldValueTooLong",
            field: field.to_owned(),
            message: format!("Too long: may not be more than {max} bytes"),
        }
    }

    /// `field: Forbidden: <detail>`.
    pub fn forbidden(field: &str, detail: &str) -> Self {
        Self {
            reason: "FieldValueForbidden",
            field: field.to_owned(),
            message: format!("Forbidden: {detail}"),
        }
    }

    /// The full line: `field: message`.
    pub fn line(&self) -> String {
        format!("{}: {}", self.field, self.message)
    }
}

/// Renders a value the way Go's field errors print it: strings quoted, numbers and booleans
/// bare, objects and lists as their type name in quotes.
pub fn render_value(value: &Value) -> String {
    match value {
        Value::String(s) => format!("{s:?}"),
        Value::Object(_) => "\"object\"".to_owned(),
        Value::Array(_) => "\"array\"".to_owned(),
        Value::Null => "\"null\"".to_owned(),
        other => other.to_string(),
    }
}

/// An API error with its HTTP status code; becomes a `Status` object on the wire.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// `Status.reason`.
    pub reason: String,
    /// `Status.message`.
    pub message: String,
    /// `Status.details`, if any.
    pub details: Option<Value>,
}

/// The identity of a resource in error messages: plural, group and kind.
#[derive(Debug, Clone, Copy)]
pub struct ResourceRef<'a> {
    /// Plural resource name.
    pub plural: &'a str,
    /// API group, empty for the core group.
    pub group: &'a str,
    /// Kind.
    pub kind: &'a str,
}

impl ResourceRef<'_> {
    fn qualified_resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_owned()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn qualified_kind(&self) -> String {
        if self.group.is_empty() {
            self.kind.to_owned()
        } else {
            format!("{}.{}", self.kind, self.group)
        }
    }

    fn details(&self, name: &str, kind: &str) -> Value {
        let mut d = json!({ "name": name, "kind": kind });
        if !self.group.is_empty() {
            d["group"] = json!(self.group);
        }
        d
    }
}

impl ApiError {
    fn new(code: u16, reason: &str, message: impl Into<String>, details: Option<Value>) -> Self {
        Self {
            code,
            reason: reason.to_owned(),
            message: message.into(),
            details,
        }
    }

    /// 404 `<resource> "<name>" not found`.
    pub fn not_found(r: ResourceRef<'_>, name: &str) -> Self {
        Self::new(
            404,
            "NotFound",
            format!("{} {name:?} not found", r.qualified_resource()),
            Some(r.details(name, r.plural)),
        )
    }

    /// 409 `<resource> "<name>" already exists`.
    pub fn already_exists(r: ResourceRef<'_>, name: &str) -> Self {
        Self::new(
            409,
            "AlreadyExists",
            format!("{} {name:?} already exists", r.qualified_resource()),
            Some(r.details(name, r.plural)),
        )
    }

    /// 409 Conflict on a stale `resourceVersion`.
    pub fn conflict(r: ResourceRef<'_>, name: &str) -> Self {
        Self::conflict_with(
            r,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    /// 409 Conflict with a custom explanation.
    pub fn conflict_with(r: ResourceRef<'_>, name: &str, why: &str) -> Self {
        Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} {name:?}: {why}",
                r.qualified_resource()
            ),
            Some(r.details(name, r.plural)),
        )
    }

    /// 422 Invalid with one cause per field error.
    pub fn invalid(r: ResourceRef<'_>, name: &str, errors: &[FieldError]) -> Self {
        let lines: Vec<String> = errors.iter().map(FieldError::line).collect();
        let aggregate = if lines.len() == 1 {
            lines[0].clone()
        } else {
            format!("[{}]", lines.join(", "))
        };
        let mut details = r.details(name, r.kind);
        details["causes"] = errors
            .iter()
            .map(|e| json!({ "reason": e.reason, "message": e.message, "field": e.field }))
            .collect();
        Self::new(
            422,
            "Invalid",
            format!("{} {name:?} is invalid: {aggregate}", r.qualified_kind()),
            Some(details),
        )
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message, None)
    }

    /// 403 Forbidden.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, "Forbidden", message, None)
    }

    /// 404 for a path that names no resource.
    pub fn path_not_found() -> Self {
        Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
            None,
        )
    }

    /// 405 MethodNotAllowed.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message, None)
    }

    /// 410 Expired, for a compacted resource version.
    pub fn gone(message: impl Into<String>) -> Self {
        Self::new(410, "Expired", message, None)
    }

    /// 415 UnsupportedMediaType.
    pub fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message, None)
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message, None)
    }

    /// The `Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(details) = &self.details {
            status["details"] = details.clone();
        }
        status
    }
}
