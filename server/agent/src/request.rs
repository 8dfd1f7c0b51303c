//! Reading the API's requests: every field checked (type, range, length, charset) before the
//! agent sees it, so a bad request is answered with what was wrong and changes nothing.
//!
//! Limits: ids ≤ [`MAX_ID_LEN`] bytes of `[A-Za-z0-9._:-]`; function names ≤
//! [`MAX_FUNCTION_LEN`] of `[A-Za-z0-9._:/@-]` (OpenWhisk's `namespace/package/action`);
//! ≤ [`MAX_FEATURES`] features, names like ids up to [`MAX_FEATURE_NAME`], values finite
//! numbers; byte counts whole numbers in `1..=`[`MAX_BYTES`]; bodies ≤ [`MAX_BODY`].

use std::collections::BTreeMap;
use std::path::{Component, Path};

use serde_json::{Map, Value};

use crate::error::ApiError;
use crate::memory::{Cgroup, MAX_BYTES};

/// Longest sandbox id.
pub const MAX_ID_LEN: usize = 128;
/// Longest function name.
pub const MAX_FUNCTION_LEN: usize = 256;
/// Most input features per sandbox.
pub const MAX_FEATURES: usize = 32;
/// Longest feature name.
pub const MAX_FEATURE_NAME: usize = 64;
/// Largest request body (64 KiB).
pub const MAX_BODY: usize = 64 * 1024;
/// Longest cgroup path.
pub const MAX_PATH_LEN: usize = 4096;

/// `POST /v1/sandboxes`.
#[derive(Debug, Clone, PartialEq)]
pub struct Create {
    /// The platform's sandbox (container) id.
    pub id: String,
    /// The function it runs.
    pub function: String,
    /// Its memory limit.
    pub booked: u64,
    /// Input features of its first invocation (for the memory model).
    pub features: BTreeMap<String, f64>,
    /// Its memory cgroup, if the platform tells.
    pub cgroup: Option<Cgroup>,
}

/// `POST /v1/sandboxes/{id}/start`: an invocation begins (new features re-predict).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Start {
    /// Input features of this invocation, if they differ from the creation's.
    pub features: Option<BTreeMap<String, f64>>,
}

/// `POST /v1/sandboxes/{id}/finish`: an invocation ended.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Finish {
    /// Its observed peak memory, if the platform measured it.
    pub peak: Option<u64>,
}

fn check_name(what: &str, s: &str, max: usize, extra: &[char]) -> Result<(), ApiError> {
    if s.is_empty() || s.len() > max {
        return Err(ApiError::invalid(format!(
            "{what} must be 1 to {max} bytes long; got {} bytes",
            s.len()
        )));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "._:-".contains(*c) || extra.contains(c)))
    {
        let allowed = format!(
            "letters, digits and . _ : -{}",
            extra.iter().map(|c| format!(" {c}")).collect::<String>()
        );
        return Err(ApiError::invalid(format!(
            "{what} {:?} contains {c:?}: use only {allowed}",
            truncate(s)
        )));
    }
    Ok(())
}

fn truncate(s: &str) -> &str {
    match s.char_indices().nth(64) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

/// Check a sandbox id (from the path or a body).
pub fn check_id(id: &str) -> Result<(), ApiError> {
    check_name("sandbox id", id, MAX_ID_LEN, &[])
}

/// The body as a JSON object (an empty body is an empty object when `empty_ok`).
fn object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if empty_ok {
            Ok(Map::new())
        } else {
            Err(ApiError::bad_request(
                "the request has no body: send a JSON object (Content-Type: application/json)",
            ))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(other) => Err(ApiError::bad_request(format!(
            "the body must be a JSON object {{...}}, not {}",
            kind(&other)
        ))),
        Err(e) => Err(ApiError::bad_request(format!(
            "the body is not valid JSON ({e}): send a JSON object"
        ))),
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn only_fields(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(format!(
            "unknown field {:?}: the fields are {}",
            truncate(k),
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn string<'a>(m: &'a Map<String, Value>, name: &str) -> Result<Option<&'a str>, ApiError> {
    match m.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(v) => Err(ApiError::invalid(format!(
            "{name} must be a string, not {}",
            kind(v)
        ))),
    }
}

/// A byte count: a whole number in `1..=MAX_BYTES`.
fn bytes(m: &Map<String, Value>, name: &str) -> Result<Option<u64>, ApiError> {
    let v = match m.get(name) {
        None | Some(Value::Null) => return Ok(None),
        Some(v) => v,
    };
    let range = format!("a whole number of bytes from 1 to {MAX_BYTES} (1 TiB)");
    let Value::Number(n) = v else {
        return Err(ApiError::invalid(format!(
            "{name} must be {range}, not {}",
            kind(v)
        )));
    };
    let why = if let Some(u) = n.as_u64() {
        if (1..=MAX_BYTES).contains(&u) {
            return Ok(Some(u));
        }
        if u == 0 {
            "it is 0"
        } else {
            "it is larger than 1 TiB"
        }
    } else if n.as_i64().is_some() || n.as_f64().is_some_and(|f| f < 0.0) {
        "it is negative"
    } else if n
        .as_f64()
        .is_some_and(|f| f.fract() != 0.0 && f.abs() < 1e15)
    {
        "it has a fraction"
    } else {
        "it is larger than 1 TiB"
    };
    Err(ApiError::invalid(format!(
        "{name} must be {range}; got {n}: {why}"
    )))
}

fn features(m: &Map<String, Value>) -> Result<Option<BTreeMap<String, f64>>, ApiError> {
    let f = match m.get("features") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(f)) => f,
        Some(v) => {
            return Err(ApiError::invalid(format!(
            "features must be an object of name: number (e.g. {{\"input_bytes\": 4096}}), not {}",
            kind(v)
        )))
        }
    };
    if f.len() > MAX_FEATURES {
        return Err(ApiError::invalid(format!(
            "features has {} entries; at most {MAX_FEATURES} are accepted",
            f.len()
        )));
    }
    let mut out = BTreeMap::new();
    for (k, v) in f {
        check_name("feature name", k, MAX_FEATURE_NAME, &[])?;
        match v.as_f64() {
            Some(x) if x.is_finite() => {
                out.insert(k.clone(), x);
            }
            _ => {
                return Err(ApiError::invalid(format!(
                    "feature {k:?} must be a finite number, not {}",
                    kind(v)
                )))
            }
        }
    }
    Ok(Some(out))
}

/// A cgroup path: absolute, no `..`, under `root`, a memory cgroup (v1 or v2).
fn cgroup(path: &str, root: &Path) -> Result<Cgroup, ApiError> {
    let p = Path::new(path);
    if path.len() > MAX_PATH_LEN
        || !p.is_absolute()
        || p.components().any(|c| matches!(c, Component::ParentDir))
    {
        return Err(ApiError::invalid(format!(
            "cgroup must be an absolute path without .. (at most {MAX_PATH_LEN} bytes), e.g. /sys/fs/cgroup/memory/SANDBOX"
        )));
    }
    if !p.starts_with(root) {
        return Err(ApiError::invalid(format!(
            "cgroup {:?} is not under {} (the agent's --cgroup-root)",
            truncate(path),
            root.display()
        )));
    }
    Cgroup::open(p).map_err(|e| {
        ApiError::invalid(format!(
            "cgroup: {e}; create the sandbox's cgroup before telling the agent, or leave the field out"
        ))
    })
}

/// Read `POST /v1/sandboxes`.
pub fn create(body: &[u8], cgroup_root: &Path) -> Result<Create, ApiError> {
    let m = object(body, false)?;
    only_fields(
        &m,
        &["id", "function", "booked_bytes", "features", "cgroup"],
    )?;
    let id = string(&m, "id")?
        .ok_or_else(|| ApiError::invalid("id is missing: give the sandbox's id (a string)"))?;
    check_id(id)?;
    let function = string(&m, "function")?.ok_or_else(|| {
        ApiError::invalid("function is missing: give the name of the function the sandbox runs")
    })?;
    check_name("function", function, MAX_FUNCTION_LEN, &['/', '@'])?;
    let booked = bytes(&m, "booked_bytes")?.ok_or_else(|| {
        ApiError::invalid("booked_bytes is missing: give the sandbox's memory limit in bytes")
    })?;
    let features = features(&m)?.unwrap_or_default();
    let cgroup = match string(&m, "cgroup")? {
        Some(p) => Some(cgroup(p, cgroup_root)?),
        None => None,
    };
    Ok(Create {
        id: id.to_string(),
        function: function.to_string(),
        booked,
        features,
        cgroup,
    })
}

/// Read `POST /v1/sandboxes/{id}/start` (the body is optional).
pub fn start(body: &[u8]) -> Result<Start, ApiError> {
    let m = object(body, true)?;
    only_fields(&m, &["features"])?;
    Ok(Start {
        features: features(&m)?,
    })
}

/// Read `POST /v1/sandboxes/{id}/finish` (the body is optional).
pub fn finish(body: &[u8]) -> Result<Finish, ApiError> {
    let m = object(body, true)?;
    only_fields(&m, &["peak_bytes"])?;
    Ok(Finish {
        peak: bytes(&m, "peak_bytes")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(r: Result<Create, ApiError>) -> ApiError {
        r.expect_err("expected an error")
    }

    #[test]
    fn a_good_create_is_read() {
        let c = create(
            br#"{"id":"c-1","function":"guest/img@2","booked_bytes":268435456,"features":{"width":640,"input_bytes":1.5e6}}"#,
            Path::new("/sys/fs/cgroup"),
        )
        .unwrap();
        assert_eq!(c.id, "c-1");
        assert_eq!(c.function, "guest/img@2");
        assert_eq!(c.booked, 256 << 20);
        assert_eq!(c.features["width"], 640.0);
        assert_eq!(c.cgroup, None);
    }

    #[test]
    fn bad_creates_say_what_was_wrong() {
        let root = Path::new("/sys/fs/cgroup");
        let cases: &[(&str, u16, &str)] = &[
            ("", 400, "no body"),
            ("{", 400, "not valid JSON"),
            ("[1]", 400, "not an array"),
            (
                r#"{"id":"a","function":"f"}"#,
                422,
                "booked_bytes is missing",
            ),
            (r#"{"function":"f","booked_bytes":1}"#, 422, "id is missing"),
            (r#"{"id":"a","booked_bytes":1}"#, 422, "function is missing"),
            (
                r#"{"id":"a","function":"f","booked_bytes":-1}"#,
                422,
                "negative",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":0}"#,
                422,
                "it is 0",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1.5}"#,
                422,
                "fraction",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1099511627777}"#,
                422,
                "larger than 1 TiB",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":18446744073709551616}"#,
                422,
                "larger than 1 TiB",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1e300}"#,
                422,
                "larger than 1 TiB",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":-1e300}"#,
                422,
                "negative",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":"1"}"#,
                422,
                "not a string",
            ),
            (
                r#"{"id":7,"function":"f","booked_bytes":1}"#,
                422,
                "id must be a string",
            ),
            (
                r#"{"id":"a b","function":"f","booked_bytes":1}"#,
                422,
                "contains ' '",
            ),
            (
                r#"{"id":"","function":"f","booked_bytes":1}"#,
                422,
                "1 to 128 bytes",
            ),
            (
                r#"{"id":"a","function":"f\u0000","booked_bytes":1}"#,
                422,
                "contains '\\0'",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"bookd":2}"#,
                422,
                "unknown field \"bookd\"",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"features":[1]}"#,
                422,
                "features must be an object",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"features":{"w":"x"}}"#,
                422,
                "finite number",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"features":{"w w":1}}"#,
                422,
                "feature name",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"cgroup":"rel/x"}"#,
                422,
                "absolute path",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"cgroup":"/sys/fs/cgroup/../../etc"}"#,
                422,
                "without ..",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"cgroup":"/etc"}"#,
                422,
                "not under /sys/fs/cgroup",
            ),
            (
                r#"{"id":"a","function":"f","booked_bytes":1,"cgroup":"/sys/fs/cgroup/nope-x"}"#,
                422,
                "not a memory cgroup",
            ),
        ];
        for (body, status, text) in cases {
            let e = err(create(body.as_bytes(), root));
            assert_eq!(e.status, *status, "{body}: {e}");
            assert!(
                e.message.contains(text),
                "{body}: {:?} lacks {text:?}",
                e.message
            );
        }
        let long = format!(
            r#"{{"id":"{}","function":"f","booked_bytes":1}}"#,
            "a".repeat(129)
        );
        assert!(err(create(long.as_bytes(), root))
            .message
            .contains("got 129 bytes"));
        let many: Vec<String> = (0..33).map(|i| format!("\"f{i}\":1")).collect();
        let body = format!(
            r#"{{"id":"a","function":"f","booked_bytes":1,"features":{{{}}}}}"#,
            many.join(",")
        );
        assert!(err(create(body.as_bytes(), root))
            .message
            .contains("at most 32"));
    }

    #[test]
    fn start_and_finish_bodies_are_optional() {
        assert_eq!(start(b"").unwrap(), Start::default());
        assert_eq!(
            start(br#"{"features":{"n":3}}"#).unwrap().features.unwrap()["n"],
            3.0
        );
        assert_eq!(finish(b" ").unwrap(), Finish::default());
        assert_eq!(finish(br#"{"peak_bytes":4096}"#).unwrap().peak, Some(4096));
        assert_eq!(finish(br#"{"peak_bytes":null}"#).unwrap().peak, None);
        assert_eq!(finish(br#"{"peak_bytes":-5}"#).unwrap_err().status, 422);
        assert_eq!(finish(br#"{"peak":5}"#).unwrap_err().status, 422);
        assert_eq!(start(b"nope").unwrap_err().status, 400);
        assert!(check_id("ok-1.x:y_z").is_ok());
        assert!(check_id("no/slash").is_err());
    }
}
