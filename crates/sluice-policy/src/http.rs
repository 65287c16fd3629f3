//! The HTTP matcher: how one rule's keys (methods, path patterns, query, headers, content type,
//! JSON body conditions, GraphQL operation) match one request, and the HTTP presets.
//!
//! Where a request can be read more than one way by the upstream (a repeated query parameter or
//! header, a path whose case a server may ignore), a rule that refuses or reviews matches if any
//! reading matches, and a rule that allows only if every reading does: an ambiguity never turns a
//! deny into an allow.

use crate::PolicyError;
use regex::Regex;
use sluice_core::glob::glob_match;
use sluice_core::http::{HttpAction, fold_name, parameter_name, pointer_tokens};
use sluice_core::policy::{GraphqlMatchSpec, JsonCondition, RuleSpec, WebSocketMatch};

/// Path segments that the `no-admin` preset refuses (compared without case).
pub const ADMIN_SEGMENTS: [&str; 5] = ["admin", "_admin", "internal", "actuator", "debug"];

#[derive(Debug)]
pub(crate) enum HttpMatcher {
    /// A rule's own keys.
    Keys(Box<HttpKeys>),
    /// The `read-only` preset: requests that only read (`true`) or the others (`false`).
    Reads(bool),
    /// The `no-admin` preset: administrative requests (`true`) or the others (`false`).
    Admin(bool),
}

#[derive(Debug)]
pub(crate) struct HttpKeys {
    methods: Vec<String>,
    paths: Vec<PathPattern>,
    query: Vec<(String, String)>,
    headers: Vec<(String, String)>,
    content_types: Vec<String>,
    json: Vec<JsonCheck>,
    graphql: Option<GraphqlMatchSpec>,
    websocket: Option<WebSocketMatch>,
}

#[derive(Debug)]
enum JsonCheck {
    Exists(String, bool),
    Equals(String, serde_json::Value),
    In(String, Vec<serde_json::Value>),
    Matches(String, Regex),
}

/// A path pattern, segment by segment.
#[derive(Debug)]
struct PathPattern(Vec<Segment>);

#[derive(Debug)]
enum Segment {
    /// `**`: any number of segments, none included.
    Any,
    /// `{name}`: exactly one segment.
    One,
    /// A glob within one segment, as written and in lower case (what a refusal matches).
    Glob { exact: String, lower: String },
}

impl HttpMatcher {
    pub(crate) fn compile(spec: &RuleSpec) -> Result<Option<HttpMatcher>, PolicyError> {
        if spec.http_keys().is_empty() {
            return Ok(None);
        }
        let problem = |p: String| PolicyError::Rule { rule: spec.name.clone(), problem: p };
        let mut methods = Vec::new();
        for method in &spec.methods {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(problem(format!("methods: {method:?} is not an HTTP method")));
            }
            methods.push(method.to_ascii_uppercase());
        }
        let paths = spec.paths.iter().map(|p| PathPattern::compile(p).map_err(&problem)).collect::<Result<_, _>>()?;
        let json = spec.json.iter().map(|c| JsonCheck::compile(c).map_err(&problem)).collect::<Result<_, _>>()?;
        Ok(Some(HttpMatcher::Keys(Box::new(HttpKeys {
            methods,
            paths,
            query: spec.query.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            headers: spec.headers.iter().map(|(k, v)| (k.to_ascii_lowercase(), v.clone())).collect(),
            content_types: spec.content_types.iter().map(|c| c.to_ascii_lowercase()).collect(),
            json,
            graphql: spec.graphql.clone(),
            websocket: spec.websocket,
        }))))
    }

    /// Whether the request matches; `allows`: the rule allows (then every reading must match).
    pub(crate) fn matches(&self, action: &HttpAction, allows: bool) -> bool {
        match self {
            HttpMatcher::Reads(reads) => action.reads_only() == *reads,
            HttpMatcher::Admin(admin) => is_admin(action) == *admin,
            HttpMatcher::Keys(keys) => keys.matches(action, allows),
        }
    }
}

/// Whether a request reaches an administrative endpoint (the `no-admin` preset).
fn is_admin(action: &HttpAction) -> bool {
    // Read as a refusal reads paths (`PathPattern::matches`): folded, as it is and with each
    // segment trimmed, and the last segment also without its format suffix.
    let folded = folded_path(&action.path);
    let admin_segment = [&*folded, &*trimmed_path(&folded)].into_iter().any(|reading| {
        let segments: Vec<&str> = reading.split('/').collect();
        let last_stem = segments.last().and_then(|last| last.split('.').next()).map(trimmed_segment);
        segments.iter().copied().chain(last_stem).any(|s| ADMIN_SEGMENTS.contains(&s))
    });
    let admin_field = action
        .body
        .graphql
        .as_ref()
        .is_some_and(|op| op.fields.iter().any(|f| f.get(..5).is_some_and(|p| p.eq_ignore_ascii_case("admin"))));
    admin_segment || admin_field
}

impl HttpKeys {
    fn matches(&self, action: &HttpAction, allows: bool) -> bool {
        // Any reading for a refusal (compared without case, as lenient servers compare), every
        // reading for an allow.
        let readings = |values: &mut dyn Iterator<Item = &str>, glob: &str| -> bool {
            let mut seen = false;
            for value in values {
                seen = true;
                // A refusal also reads a plain value as binders do (`1`, `on`, `yes` are `true`
                // to Spring and pydantic; ` 25000` is `25000`).
                let matched = if allows {
                    glob_match(glob, value)
                } else {
                    glob_match(&glob.to_lowercase(), &value.to_lowercase())
                        || !glob.contains(['*', '?', '['])
                            && loosely_equal(&serde_json::Value::from(glob), &serde_json::Value::from(value))
                };
                if matched != allows {
                    return !allows;
                }
            }
            seen && allows
        };
        // Frameworks answer HEAD with the GET handler: a refusal of GET refuses HEAD too.
        let head_as_get = !allows && action.method == "HEAD" && self.methods.iter().any(|m| m == "GET");
        if !self.methods.is_empty() && !self.methods.contains(&action.method) && !head_as_get {
            return false;
        }
        if self.websocket.is_some_and(|w| !w.matches(action.websocket)) {
            return false;
        }
        if !self.paths.is_empty() && !self.paths.iter().any(|p| p.matches(&action.path, !allows)) {
            return false;
        }
        for (name, glob) in &self.query {
            // `Force`, `force[]` and `force` are one parameter to some framework: each is a
            // reading. An allow also needs the name as written (a case-sensitive server sees no
            // other). A refusal also reads the form body's fields (Rails, Laravel, Flask's
            // `request.values` and Spring's `@RequestParam` merge them with the query) and an
            // indexed name (`force[0]` is a list holding the value to qs and Rails).
            let wanted = parameter_name(name);
            let form = action.body.form.iter().filter(|_| !allows);
            let named = |n: &str| {
                let n = parameter_name(n);
                n == wanted || !allows && unindexed(&n) == wanted
            };
            let mut values = action.query.iter().chain(form).filter(|(n, _)| named(n)).map(|(_, v)| v.as_str());
            if !readings(&mut values, glob) || allows && !action.query.iter().any(|(n, _)| n == name) {
                return false;
            }
        }
        for (name, glob) in &self.headers {
            let mut values = action.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str());
            if !readings(&mut values, glob) {
                return false;
            }
        }
        if !self.content_types.is_empty() {
            let Some(ct) = action.body.content_type.as_deref() else { return false };
            if !self.content_types.iter().any(|g| glob_match(g, ct)) {
                return false;
            }
        }
        if !self.json.is_empty() && !self.json_matches(action, allows) {
            return false;
        }
        if let Some(graphql) = &self.graphql {
            // An operation found off a GraphQL path may be a REST body's field: it satisfies no allow.
            let Some(op) = action.body.graphql.as_ref().filter(|op| op.on_endpoint || !allows) else { return false };
            if !graphql.operations.is_empty() && !graphql.operations.contains(&op.kind) {
                return false;
            }
            if !graphql.fields.is_empty() {
                let named = |f: &String| graphql.fields.iter().any(|g| glob_match(g, f));
                let fields_ok = if allows { op.fields.iter().all(named) } else { op.fields.iter().any(named) };
                if !fields_ok {
                    return false;
                }
            }
        }
        true
    }

    /// The JSON conditions. Frameworks merge a request's parameters — JSON fields, form fields,
    /// query parameters — and may compare names without case, so a condition on `/amount` is read
    /// on each: a refusal applies if it holds on any of them, an allow only on a JSON body that
    /// sluice read, with the condition holding on every other place the field is given too.
    fn json_matches(&self, action: &HttpAction, allows: bool) -> bool {
        let body = action.body.json.as_deref();
        if allows {
            let Some(body) = body else { return false };
            return self.json.iter().all(|check| {
                check.holds(body.pointer(check.pointer()), true)
                    && check.holds(lookup(body, check.pointer()), true)
                    && parameters(action, check.pointer()).all(|v| check.holds(Some(&v), true))
            });
        }
        // A body that may carry the fields but could not be read: its conditions may hold for
        // all sluice knows.
        if action.body.json_unread.is_some() {
            return true;
        }
        self.json.iter().all(|check| {
            let given: Vec<serde_json::Value> = parameters(action, check.pointer()).collect();
            // The JSON body is one reading (where the field may be absent); without one, a
            // request that gives the field nowhere reads it as absent.
            // In the body, the key as written and a key in another case are two readings.
            let in_body = match body {
                Some(body) => {
                    check.holds(body.pointer(check.pointer()), false)
                        || check.holds(lookup(body, check.pointer()), false)
                }
                None => given.is_empty() && check.holds(None, false),
            };
            in_body || given.iter().any(|v| check.holds(Some(v), false))
        })
    }
}

/// A parameter name without a final numeric subscript (`force[0]` is `force`).
fn unindexed(name: &str) -> &str {
    match name.strip_suffix(']').and_then(|n| n.rsplit_once('[')) {
        Some((head, index)) if !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit()) => head,
        _ => name,
    }
}

/// The value at `pointer`, a key that differs only in case standing for the one named (servers
/// that ignore case read it so; sluice refuses objects with two such keys).
fn lookup<'a>(body: &'a serde_json::Value, pointer: &str) -> Option<&'a serde_json::Value> {
    if let Some(exact) = body.pointer(pointer) {
        return Some(exact);
    }
    let mut at = body;
    for token in pointer_tokens(pointer) {
        at = match at {
            serde_json::Value::Object(map) => {
                let wanted = fold_name(&token);
                map.iter().find(|(k, _)| fold_name(k) == wanted).map(|(_, v)| v)?
            }
            serde_json::Value::Array(items) => items.get(token.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(at)
}

/// The values a form field or query parameter gives the field at `pointer`, as strings: `/a`
/// is `a`, `a[]` too, and `/a/b` is `a[b]` (Rails, PHP, qs) or `a.b` (Spring), names read as
/// `parameter_name`.
fn parameters<'a>(action: &'a HttpAction, pointer: &str) -> impl Iterator<Item = serde_json::Value> + 'a {
    let tokens: Vec<String> = pointer_tokens(pointer).map(|t| parameter_name(&t)).collect();
    action.query.iter().chain(&action.body.form).filter_map(move |(name, value)| {
        // Rails, PHP and qs nest with brackets (`payment[amount]`), Spring with dots
        // (`payment.amount`): either reading names the field.
        let bracketed = parameter_name(name);
        let bracketed: Vec<&str> = bracketed.split('[').map(|p| p.strip_suffix(']').unwrap_or(p)).collect();
        let dotted = fold_name(name.trim());
        let dotted: Vec<&str> = dotted.split('.').collect();
        let named = |path: &[&str]| !tokens.is_empty() && tokens.iter().map(String::as_str).eq(path.iter().copied());
        (named(&bracketed) || named(&dotted)).then(|| serde_json::Value::String(value.clone()))
    })
}

impl JsonCheck {
    fn compile(c: &JsonCondition) -> Result<JsonCheck, String> {
        if !(c.pointer.is_empty() || c.pointer.starts_with('/')) {
            return Err(format!("json: pointer {:?} must be empty or start with '/'", c.pointer));
        }
        let pointer = c.pointer.clone();
        let given = [c.exists.is_some(), c.equals.is_some(), c.one_of.is_some(), c.matches.is_some()];
        if given.iter().filter(|g| **g).count() != 1 {
            return Err(format!(
                "json: the condition on {:?} needs exactly one of exists, equals, in, matches",
                c.pointer
            ));
        }
        Ok(match (c.exists, &c.equals, &c.one_of, &c.matches) {
            (Some(exists), ..) => JsonCheck::Exists(pointer, exists),
            (_, Some(value), ..) => JsonCheck::Equals(pointer, value.clone()),
            (_, _, Some(values), _) => JsonCheck::In(pointer, values.clone()),
            (_, _, _, Some(pattern)) => {
                let regex = Regex::new(&format!("^(?:{pattern})$"))
                    .map_err(|e| format!("json: matches {pattern:?} is not a regular expression: {e}"))?;
                JsonCheck::Matches(pointer, regex)
            }
            _ => unreachable!("exactly one was given"),
        })
    }

    fn pointer(&self) -> &str {
        match self {
            JsonCheck::Exists(p, _) | JsonCheck::Equals(p, _) | JsonCheck::In(p, _) | JsonCheck::Matches(p, _) => p,
        }
    }

    /// Whether the condition holds on `value` (`None`: the field is absent). `strict`: for an
    /// allow, values are equal as JSON; for a refusal, as lenient servers coerce them too (`"25000"`
    /// and `25000`, `"TRUE"` and `true`), and `matches` reads a number or a boolean as its text.
    fn holds(&self, value: Option<&serde_json::Value>, strict: bool) -> bool {
        let equal = |a: &serde_json::Value, b: &serde_json::Value| json_equal(a, b) || !strict && loosely_equal(a, b);
        match self {
            JsonCheck::Exists(_, exists) => value.is_some() == *exists,
            JsonCheck::Equals(_, expected) => value.is_some_and(|v| equal(v, expected)),
            JsonCheck::In(_, values) => value.is_some_and(|v| values.iter().any(|expected| equal(v, expected))),
            JsonCheck::Matches(_, regex) => match value {
                Some(serde_json::Value::String(s)) if strict => regex.is_match(s),
                Some(other) if !strict => {
                    scalar_text(other).is_some_and(|s| readings_of(&s).iter().any(|r| regex.is_match(r)))
                }
                _ => false,
            },
        }
    }
}

/// Equality as JSON means it: `1` and `1.0` are the same number.
fn json_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    match (a.as_f64(), b.as_f64()) {
        (Some(x), Some(y)) if a.is_number() && b.is_number() => x == y,
        _ => a == b,
    }
}

/// Equality after the coercions lenient servers make: scalars compared as text without case, or
/// as numbers when both read as one.
fn loosely_equal(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    let (Some(x), Some(y)) = (scalar_text(a), scalar_text(b)) else { return false };
    let (x, y) = (x.trim(), y.trim());
    let truth = |s: &str| match s.to_ascii_lowercase().as_str() {
        "true" | "1" | "on" | "yes" | "y" | "t" => Some(true),
        "false" | "0" | "off" | "no" | "n" | "f" => Some(false),
        _ => None,
    };
    x.eq_ignore_ascii_case(y)
        || matches!((x.parse::<f64>(), y.parse::<f64>()), (Ok(p), Ok(q)) if p == q)
        || (truth(x).is_some() && truth(x) == truth(y))
}

/// The texts a lenient server may take a scalar's text for: itself, without surrounding
/// blanks, the number it reads as written plainly (`1e4`, `25000.0`, ` 25000` are 10000, 25000
/// and 25000 to `int()`, JavaScript and most JSON binders) and cut to an integer (Jackson's
/// float-as-int, PHP's `(int)`), and its leading digits (Ruby's `to_i`, PHP: `"25000abc"` is
/// 25000).
fn readings_of(text: &str) -> Vec<String> {
    let trimmed = text.trim();
    let mut readings = vec![text.to_string(), trimmed.to_string()];
    if let Ok(number) = trimmed.parse::<f64>()
        && number.is_finite()
    {
        readings.push(number.to_string());
        readings.push(number.trunc().to_string());
    }
    let sign = usize::from(trimmed.starts_with(['-', '+']));
    let digits = trimmed[sign..].bytes().take_while(u8::is_ascii_digit).count();
    if digits > 0 {
        readings.push(trimmed[..sign + digits].to_string());
    }
    readings
}

/// A string, number, boolean or null as text; `None` for an object or array.
fn scalar_text(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(_) | serde_json::Value::Object(_) => None,
        other => Some(other.to_string()),
    }
}

impl PathPattern {
    fn compile(pattern: &str) -> Result<PathPattern, String> {
        if !pattern.starts_with('/') {
            return Err(format!("paths: {pattern:?} must start with '/'"));
        }
        let segments = pattern
            .split('/')
            .skip(1)
            .filter(|s| !s.is_empty())
            .map(|s| match s {
                "**" => Ok(Segment::Any),
                s if s.starts_with('{') && s.ends_with('}') => Ok(Segment::One),
                s if s.contains(['{', '}']) => Err(format!("paths: {pattern:?}: a template must be a whole segment")),
                s if s.contains("**") => Err(format!("paths: {pattern:?}: '**' must be a whole segment")),
                s => Ok(Segment::Glob { exact: s.to_string(), lower: fold_name(s) }),
            })
            .collect::<Result<Vec<_>, _>>()?;
        if segments.iter().filter(|s| matches!(s, Segment::Any)).count() > 2 {
            return Err(format!("paths: {pattern:?}: at most two '**' in a pattern"));
        }
        Ok(PathPattern(segments))
    }

    /// Whether the normalised `path` matches; `any_case`: letters match whatever their case (a
    /// server may not tell `/Admin` from `/admin`).
    fn matches(&self, path: &str, any_case: bool) -> bool {
        if !any_case {
            return self.matches_segments(path, false);
        }
        // A refusal reads the path folded, as it is and with each segment trimmed, and each of
        // those also without a format suffix (`/v1/payments.json`): Rails routes, Django REST
        // framework's suffix patterns and older Spring serve it as `/v1/payments`.
        let folded = folded_path(path);
        let trimmed = trimmed_path(&folded);
        [&*folded, &*trimmed].into_iter().any(|reading| {
            // `payments.a.b` is `payments.a` and `payments` to such routers.
            std::iter::successors(Some(reading), |r| without_format(r)).any(|r| self.matches_segments(r, true))
        })
    }

    fn matches_segments(&self, path: &str, folded: bool) -> bool {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        match_segments(&self.0, &segments, folded)
    }
}

/// The path as lenient servers compare it (`fold_name`). Asked of every request: a path with
/// nothing to fold (most) is not copied.
fn folded_path(path: &str) -> std::borrow::Cow<'_, str> {
    match path.bytes().all(|b| b.is_ascii() && !b.is_ascii_uppercase()) {
        true => std::borrow::Cow::Borrowed(path),
        false => std::borrow::Cow::Owned(fold_name(path)),
    }
}

/// The path with each segment as Windows servers (IIS, file-backed routes), Spring's suffix
/// matching and token-trimming routers read it: without blanks around it or dots after it
/// (`/admin./x` and `/%20admin/x` are `/admin/x` to them). Borrowed when nothing is trimmed.
fn trimmed_path(path: &str) -> std::borrow::Cow<'_, str> {
    if !path.split('/').any(|s| trimmed_segment(s).len() != s.len()) {
        return std::borrow::Cow::Borrowed(path);
    }
    std::borrow::Cow::Owned(path.split('/').map(trimmed_segment).collect::<Vec<_>>().join("/"))
}

/// A segment without blanks around it and dots after it. (Segments of dots and blanks alone are
/// refused before policy: `normalise_path`.)
fn trimmed_segment(segment: &str) -> &str {
    segment.trim_start_matches(char::is_whitespace).trim_end_matches(|c: char| c == '.' || c.is_whitespace())
}

/// The path without the format suffix of its last segment (what follows its last dot, as
/// Rails's `(.:format)` reads it), when it has one.
fn without_format(path: &str) -> Option<&str> {
    let (stem, suffix) = path.rsplit_once('.')?;
    (!suffix.is_empty() && !suffix.contains('/') && !stem.ends_with('/') && !stem.is_empty()).then_some(stem)
}

fn match_segments(pattern: &[Segment], path: &[&str], lower: bool) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::Any, rest)) => (0..=path.len()).any(|skip| match_segments(rest, &path[skip..], lower)),
        Some((segment, rest)) => {
            let Some((first, others)) = path.split_first() else { return false };
            let ok = match segment {
                Segment::One => true,
                Segment::Glob { lower: glob, .. } if lower => glob_match(glob, first),
                Segment::Glob { exact, .. } => glob_match(exact, first),
                Segment::Any => unreachable!("handled above"),
            };
            ok && match_segments(rest, others, lower)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sluice_core::http::{BodySummary, GraphqlKind, GraphqlOperation};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    fn request(method: &str, target: &str) -> HttpAction {
        HttpAction::new(method, target).unwrap()
    }

    fn keys(spec: RuleSpec) -> HttpMatcher {
        HttpMatcher::compile(&RuleSpec { name: "r".into(), ..spec }).unwrap().unwrap()
    }

    #[test]
    fn path_templates_and_globs() {
        let m = keys(RuleSpec { paths: vec!["/v1/customers/{id}".into(), "/admin/**".into()], ..Default::default() });
        for (path, expected) in [
            ("/v1/customers/42", true),
            ("/v1/customers", false),
            ("/v1/customers/42/orders", false),
            ("/admin", true),
            ("/admin/users/1", true),
            ("/administrator", false),
        ] {
            assert_eq!(m.matches(&request("GET", path), true), expected, "{path}");
        }
        // A refusal matches whatever the case; an allow only the case written.
        assert!(m.matches(&request("GET", "/ADMIN/users"), false));
        assert!(!m.matches(&request("GET", "/ADMIN/users"), true));
        let glob = keys(RuleSpec { paths: vec!["/v*/export-*".into()], ..Default::default() });
        assert!(glob.matches(&request("GET", "/v2/export-all"), true));
        assert!(HttpMatcher::compile(&RuleSpec { paths: vec!["/a/x{id}".into()], ..Default::default() }).is_err());
        assert!(HttpMatcher::compile(&RuleSpec { paths: vec!["a".into()], ..Default::default() }).is_err());
    }

    #[test]
    fn a_repeated_parameter_refuses_if_any_reading_does_and_allows_only_if_all_do() {
        let m = keys(RuleSpec { query: BTreeMap::from([("force".into(), "true".into())]), ..Default::default() });
        let both = request("POST", "/x?force=false&force=true");
        assert!(m.matches(&both, false), "a deny sees the reading that matches");
        assert!(!m.matches(&both, true), "an allow needs every reading");
        assert!(m.matches(&request("POST", "/x?force=true"), true));
        assert!(!m.matches(&request("POST", "/x"), false));
    }

    #[test]
    fn a_refusing_query_rule_reads_form_fields_indexed_names_and_loose_values() {
        let m = keys(RuleSpec { query: BTreeMap::from([("force".into(), "true".into())]), ..Default::default() });
        for target in ["/x?force=1", "/x?force=on", "/x?force[0]=true", "/x?Force=YES"] {
            assert!(m.matches(&request("POST", target), false), "{target}");
            assert!(!m.matches(&request("POST", target), true), "an allow stays strict: {target}");
        }
        assert!(!m.matches(&request("POST", "/x?force=0"), false));
        let mut form = request("POST", "/x");
        form.body.form = vec![("force".into(), "true".into())];
        assert!(m.matches(&form, false), "a form field is a parameter too");
        assert!(!m.matches(&form, true));
        assert_eq!(unindexed("a[12]"), "a");
        assert_eq!(unindexed("a[b]"), "a[b]");
        assert_eq!(unindexed("a[]"), "a[]");
    }

    #[test]
    fn methods_headers_and_content_types() {
        let m = keys(RuleSpec {
            methods: vec!["delete".into(), "post".into()],
            headers: BTreeMap::from([("X-Env".into(), "prod*".into())]),
            ..Default::default()
        });
        let mut delete = request("DELETE", "/x");
        assert!(!m.matches(&delete, false), "the header is missing");
        delete.headers.push(("x-env".into(), "production".into()));
        assert!(m.matches(&delete, false));
        delete.method = "GET".into();
        assert!(!m.matches(&delete, false));
        let ct = keys(RuleSpec { content_types: vec!["application/*json".into()], ..Default::default() });
        let mut post = request("POST", "/x");
        assert!(!ct.matches(&post, false));
        post.body.content_type = Some("application/merge-patch+json".into());
        assert!(ct.matches(&post, false));
        assert!(HttpMatcher::compile(&RuleSpec { methods: vec!["GE T".into()], ..Default::default() }).is_err());
    }

    #[test]
    fn the_websocket_key_tells_plain_requests_openings_and_messages_apart() {
        use sluice_core::http::WebSocket;
        let plain = request("GET", "/ws");
        let opening = HttpAction { websocket: Some(WebSocket::Opening), ..plain.clone() };
        let message = opening.message_on_socket();
        for (want, matched) in [
            (WebSocketMatch::None, [true, false, false]),
            (WebSocketMatch::Opening, [false, true, false]),
            (WebSocketMatch::Message, [false, false, true]),
        ] {
            let m = keys(RuleSpec { paths: vec!["/ws".into()], websocket: Some(want), ..Default::default() });
            for (action, expected) in [&plain, &opening, &message].into_iter().zip(matched) {
                assert_eq!(m.matches(action, true), expected, "{want:?} {:?}", action.websocket);
                assert_eq!(m.matches(action, false), expected, "{want:?} {:?}", action.websocket);
            }
        }
        // Without the key, a rule is about all three.
        let any = keys(RuleSpec { paths: vec!["/ws".into()], ..Default::default() });
        assert!([&plain, &opening, &message].iter().all(|a| any.matches(a, true)));
    }

    #[test]
    fn json_conditions() {
        let cond = |c: JsonCondition| keys(RuleSpec { json: vec![c], ..Default::default() });
        let body =
            serde_json::json!({"amount": 5000.0, "role": "admin", "email": "a@corp.example", "items": [{"sku": "X"}]});
        let mut post = request("POST", "/pay");
        post.body = BodySummary { json: Some(Arc::new(body)), ..Default::default() };
        let exists = cond(JsonCondition { pointer: "/items/0/sku".into(), exists: Some(true), ..Default::default() });
        let absent = cond(JsonCondition { pointer: "/force".into(), exists: Some(false), ..Default::default() });
        let equals = cond(JsonCondition {
            pointer: "/amount".into(),
            equals: Some(serde_json::json!(5000)),
            ..Default::default()
        });
        let one_of = cond(JsonCondition {
            pointer: "/role".into(),
            one_of: Some(vec![serde_json::json!("owner"), serde_json::json!("admin")]),
            ..Default::default()
        });
        let matches = cond(JsonCondition {
            pointer: "/email".into(),
            matches: Some(".*@corp\\.example".into()),
            ..Default::default()
        });
        for m in [exists, absent, equals, one_of, matches] {
            assert!(m.matches(&post, false), "{m:?}");
        }
        let no_match =
            cond(JsonCondition { pointer: "/email".into(), matches: Some("corp".into()), ..Default::default() });
        assert!(!no_match.matches(&post, false), "matches is anchored");
        assert!(
            !cond(JsonCondition { pointer: "/amount".into(), exists: Some(true), ..Default::default() })
                .matches(&request("POST", "/pay"), false)
        );
        // A body a server may read as JSON but sluice could not: a refusal by its JSON applies,
        // an allow by it does not.
        let force = cond(JsonCondition {
            pointer: "/force".into(),
            equals: Some(serde_json::json!(true)),
            ..Default::default()
        });
        let mut unread = request("POST", "/pay");
        unread.body.json_unread = Some("it is UTF-16LE".into());
        assert!(force.matches(&unread, false) && !force.matches(&unread, true));
        assert!(!force.matches(&request("POST", "/pay"), false), "a body that is not JSON is not");
        let two =
            JsonCondition { pointer: "/a".into(), exists: Some(true), matches: Some("x".into()), ..Default::default() };
        assert!(HttpMatcher::compile(&RuleSpec { json: vec![two], ..Default::default() }).is_err());
    }

    #[test]
    fn a_json_condition_reads_the_field_wherever_a_framework_would_find_it() {
        let big = keys(RuleSpec {
            json: vec![JsonCondition {
                pointer: "/amount".into(),
                matches: Some("[0-9]{4,}".into()),
                ..Default::default()
            }],
            ..Default::default()
        });
        let with_json = |body: serde_json::Value| {
            let mut post = request("POST", "/pay");
            post.body.json = Some(Arc::new(body));
            post
        };
        // A number is read as its text by a refusal, as a server would write it too; an allow
        // compares as JSON.
        assert!(big.matches(&with_json(serde_json::json!({"amount": 25000})), false));
        for amount in [
            serde_json::json!(1e4),
            serde_json::json!(25000.0),
            serde_json::json!(" 25000"),
            serde_json::json!("2.5e4"),
        ] {
            assert!(big.matches(&with_json(serde_json::json!({ "amount": amount })), false), "{amount}");
        }
        assert!(!big.matches(&with_json(serde_json::json!({"amount": 12.5})), false));
        assert!(!big.matches(&with_json(serde_json::json!({"amount": 25000})), true));
        assert!(big.matches(&with_json(serde_json::json!({"amount": "25000"})), true));
        // A key in another case, as Go's encoding/json reads it.
        assert!(big.matches(&with_json(serde_json::json!({"AMOUNT": "25000"})), false));
        // The query and form fields are the same parameters to Rails, Laravel, Spring and DRF.
        assert!(big.matches(&request("POST", "/pay?amount=25000"), false));
        assert!(big.matches(&request("POST", "/pay?Amount%5B%5D=25000"), false));
        let mut form = request("POST", "/pay");
        form.body.form = vec![("amount".into(), "25000".into())];
        assert!(big.matches(&form, false));
        assert!(!big.matches(&form, true), "an allow needs a JSON body sluice read");
        // Every place the field is given must satisfy an allow.
        let mut both = request("POST", "/pay?amount=25000");
        both.body.json = Some(Arc::new(serde_json::json!({"amount": "9999"})));
        assert!(big.matches(&both, true));
        both.query = vec![("amount".into(), "12".into())];
        assert!(!big.matches(&both, true));
        assert!(big.matches(&both, false), "the JSON reading refuses");
        // Absent from the JSON body is a reading too, wherever else the field is given.
        let keyless = keys(RuleSpec {
            json: vec![JsonCondition { pointer: "/key".into(), exists: Some(false), ..Default::default() }],
            ..Default::default()
        });
        let mut elsewhere = request("POST", "/pay?key=k1");
        elsewhere.body.json = Some(Arc::new(serde_json::json!({"amount": 1})));
        assert!(keyless.matches(&elsewhere, false));
        assert!(!keyless.matches(&request("POST", "/pay?key=k1"), false), "given, and no JSON body");
        assert!(keyless.matches(&request("POST", "/pay"), false));
        // The key as written and a key in another case are two readings of the body: a refusal
        // matches on either, an allow needs both.
        let mut upper = request("POST", "/pay");
        upper.body.json = Some(Arc::new(serde_json::json!({"KEY": "k1"})));
        assert!(keyless.matches(&upper, false), "a case-sensitive server sees no key");
        assert!(!keyless.matches(&upper, true), "a server that folds case sees one");
        // Nested fields as Rails and PHP name them.
        let nested = keys(RuleSpec {
            json: vec![JsonCondition {
                pointer: "/payment/amount".into(),
                equals: Some(serde_json::json!(25000)),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(nested.matches(&request("POST", "/pay?payment[amount]=25000"), false));
        assert!(nested.matches(&request("POST", "/pay?Payment.amount=25000"), false), "as Spring binds it");
        assert!(!nested.matches(&request("POST", "/pay?payment[other]=25000"), false));
        // Coercions lenient servers make, for a refusal only.
        let forced = keys(RuleSpec {
            json: vec![JsonCondition {
                pointer: "/force".into(),
                equals: Some(serde_json::json!(true)),
                ..Default::default()
            }],
            ..Default::default()
        });
        assert!(forced.matches(&with_json(serde_json::json!({"force": "TRUE"})), false));
        assert!(!forced.matches(&with_json(serde_json::json!({"force": "TRUE"})), true));
        assert!(forced.matches(&request("DELETE", "/x?force=true"), false));
        assert!(!forced.matches(&request("DELETE", "/x?force=false"), false));
        // Truthy spellings and the numbers servers cut or read from the front.
        for (value, expected) in [("1", true), ("yes", true), ("on", true), ("0", false), ("maybe", false)] {
            let target = format!("/x?force={value}");
            assert_eq!(forced.matches(&request("DELETE", &target), false), expected, "{value}");
        }
        for amount in [serde_json::json!(25000.5), serde_json::json!("25000abc"), serde_json::json!("+25000")] {
            assert!(big.matches(&with_json(serde_json::json!({ "amount": amount })), false), "{amount}");
        }
        // A body whose fields sluice does not read (multipart, XML): a refusal applies.
        let mut multipart = request("POST", "/pay");
        multipart.body.json_unread = Some("its fields are in multipart/form-data, which sluice does not read".into());
        assert!(big.matches(&multipart, false) && !big.matches(&multipart, true));
    }

    #[test]
    fn a_refusal_reads_a_path_with_a_format_suffix_and_parameters_in_any_case() {
        let m = keys(RuleSpec { paths: vec!["/v1/payments".into()], ..Default::default() });
        assert!(m.matches(&request("POST", "/v1/payments.json"), false));
        assert!(m.matches(&request("POST", "/v1/Payments.XML"), false));
        assert!(!m.matches(&request("POST", "/v1/payments.json"), true), "an allow reads the path as written");
        assert!(!m.matches(&request("POST", "/v1/payments.json/x"), false));
        assert!(is_admin(&request("GET", "/v1/admin.json")));
        assert!(!is_admin(&request("GET", "/v1/administrators.json")));
        let q = keys(RuleSpec { query: BTreeMap::from([("force".into(), "true".into())]), ..Default::default() });
        for target in ["/x?Force=true", "/x?force[]=true", "/x?force=TRUE"] {
            assert!(q.matches(&request("POST", target), false), "{target}");
        }
        assert!(!q.matches(&request("POST", "/x?force=TRUE"), true));
        // An allow needs the name as written: a case-sensitive server sees no other.
        assert!(q.matches(&request("POST", "/x?force=true"), true));
        assert!(!q.matches(&request("POST", "/x?FORCE=true"), true));
        assert!(!q.matches(&request("POST", "/x?force[]=true"), true));
        assert!(!q.matches(&request("POST", "/x?force=true&Force=false"), true));
        // Any suffix after the last dot of the last segment, as Rails reads a format.
        for path in ["/v1/payments.x-y", "/v1/payments.abcdefghij", "/v1/payments.a.b"] {
            assert!(m.matches(&request("POST", path), false), "{path}");
        }
        assert!(is_admin(&request("GET", "/admin.x_y")) && is_admin(&request("GET", "/v1/admin.a.b")));
        // Letters as lenient servers fold them (.NET's OrdinalIgnoreCase upper-cases `ſ` and `ı`
        // to `S` and `I`), and segments as Windows servers trim them.
        for path in ["/v1/payment\u{17F}", "/v1/PAYMENTS", "/v1/payments.", "/v1./payments%20", "/v1/payments.%20."] {
            assert!(m.matches(&request("POST", path), false), "{path}");
            assert!(!m.matches(&request("POST", path), true), "an allow reads the path as written: {path}");
        }
        assert!(
            is_admin(&request("GET", "/\u{212A}eys/../adm\u{131}n/x")) && is_admin(&request("GET", "/admin../users"))
        );
        for path in ["/adm%C4%B0n/x", "/%20admin/x", "/admin%C2%A0/x", "/admin%20.json", "/%EF%BD%81dmin"] {
            assert!(is_admin(&request("GET", path)), "{path}");
        }
        assert!(m.matches(&request("POST", "/v1/payments.json."), false));
        // Trimmed is one more reading, not the only one.
        let any_char = keys(RuleSpec { paths: vec!["/v?".into()], ..Default::default() });
        assert!(any_char.matches(&request("POST", "/v."), false));
        let greek = keys(RuleSpec { paths: vec!["/\u{39F}\u{3A3}".into()], ..Default::default() });
        assert!(greek.matches(&request("POST", "/%CE%BF%CF%82"), false));
    }

    #[test]
    fn graphql_operations_and_fields() {
        let m = keys(RuleSpec {
            graphql: Some(GraphqlMatchSpec { operations: vec![GraphqlKind::Mutation], fields: vec!["delete*".into()] }),
            ..Default::default()
        });
        let mut post = request("POST", "/graphql");
        assert!(!m.matches(&post, false), "not GraphQL");
        post.body.graphql = Some(GraphqlOperation {
            kind: GraphqlKind::Mutation,
            name: None,
            fields: vec!["renameUser".into(), "deleteUser".into()],
            renamed: Vec::new(),
            argument_names: Vec::new(),
            on_endpoint: true,
        });
        assert!(m.matches(&post, false), "a deny matches any field");
        assert!(!m.matches(&post, true), "an allow needs every field");
        let deletes = keys(RuleSpec {
            graphql: Some(GraphqlMatchSpec { operations: vec![GraphqlKind::Mutation], fields: vec!["*".into()] }),
            ..Default::default()
        });
        assert!(deletes.matches(&post, true));
        post.body.graphql.as_mut().unwrap().on_endpoint = false;
        assert!(
            deletes.matches(&post, false) && !deletes.matches(&post, true),
            "found off a GraphQL path: refusals only"
        );
        assert!(is_admin(&request("GET", "/v1/Internal/x")));
        post.body.graphql.as_mut().unwrap().fields = vec!["adminResetAll".into()];
        assert!(is_admin(&post));
        assert!(!is_admin(&request("GET", "/v1/administrators")));
    }
}
