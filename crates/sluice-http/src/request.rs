//! A request's body read into what policy matches: its media type, its JSON (duplicate keys
//! refused: two parsers would read two values), its GraphQL operation on a GraphQL endpoint, its
//! digest and a beginning for reviewers.

use crate::graphql::{self, Carrier};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sluice_core::http::{BodySummary, HttpAction};
use std::fmt;
use std::sync::Arc;

/// Bytes of a body shown to a reviewer.
const EXCERPT: usize = 2048;

/// Fills `action.body` from the body's bytes; the error says why the request is refused.
pub fn read_body(
    action: &mut HttpAction,
    content_type: Option<&str>,
    body: &[u8],
    graphql_endpoint: bool,
) -> Result<(), String> {
    // Body parsers decode a body in the charset it declares (Express's in any `utf-*`, UTF-7
    // among them): where that charset writes ASCII otherwise, the fields the server reads are
    // not those sluice reads (`{"+AGE-mount": 25000}` is `{"amount": 25000}` in UTF-7).
    if !body.is_empty()
        && let Some(charset) = content_type.and_then(|ct| crate::charset::declared_unreadable(ct.as_bytes()))
    {
        return Err(format!(
            "the body is declared {charset:?} text, which a server decodes to other characters than sluice reads; send it in UTF-8"
        ));
    }
    let media = content_type.map(crate::response::media_type);
    let declared_json = media.as_deref().is_some_and(|m| m == "application/json" || m.ends_with("+json"));
    // A body sluice cannot read as JSON that a server may (behind a byte-order mark, in UTF-16):
    // refusing rules about JSON apply to it, allowing ones do not.
    let mut json_unread = None;
    let json = if declared_json || looks_like_json(body) || crate::charset::json_in_another_encoding(body) {
        match strict_json(body) {
            Ok(value) => Some(Arc::new(value)),
            Err(e) if declared_json => return Err(format!("the body is declared JSON and is not: {e}")),
            Err(e) if e.contains("twice") => return Err(format!("the body {e}")),
            Err(e) => {
                json_unread = Some(match crate::charset::wide(body) {
                    Some(encoding) => format!("it is {encoding}, and sluice reads JSON in UTF-8"),
                    None if body.starts_with(b"\xEF\xBB\xBF") => "it begins with a byte-order mark".to_string(),
                    None => e,
                });
                None
            }
        }
    } else {
        None
    };
    // Frameworks read form fields as the same parameters as JSON fields; a body whose fields
    // sluice does not read may hold any of them.
    let reads_as_form =
        media.as_deref() == Some("application/x-www-form-urlencoded") || (media.is_none() && json.is_none());
    let form: Vec<(String, String)> = if reads_as_form {
        form_urlencoded::parse(body).map(|(n, v)| (n.into_owned(), v.into_owned())).collect()
    } else {
        Vec::new()
    };
    // A declared form is read by PHP too, which cuts a field's name at NUL.
    if media.as_deref() == Some("application/x-www-form-urlencoded")
        && form.iter().any(|(n, v)| !sluice_core::http::is_plain_parameter(n, v))
    {
        return Err(
            "a form field's name carries a control character, or its value NUL, which servers read differently".into(),
        );
    }
    if json.is_none()
        && json_unread.is_none()
        && !body.is_empty()
        && let Some(kind) =
            media.as_deref().filter(|m| *m == "multipart/form-data" || m.ends_with("/xml") || m.ends_with("+xml"))
    {
        json_unread = Some(format!("its fields are in {kind}, which sluice does not read"));
    }
    if acts_as_another(media.as_deref(), json.as_deref(), body) {
        return Err(
            "the body carries sudo, which would have the upstream act as another user than the connection's credential (GitLab reads it)"
                .into(),
        );
    }
    // A multipart form's fields that carry GraphQL (the multipart request spec's `operations`,
    // GraphQL Yoga's and Apollo's uploads; a `query` field): read as a JSON body's would be.
    let (mut multipart_queries, mut operations) = (Vec::new(), None);
    if media.as_deref() == Some("multipart/form-data")
        && let Some(boundary) = content_type.and_then(|ct| crate::multipart::boundary(ct.as_bytes()))
    {
        for part in crate::multipart::parts(body, &boundary) {
            match part.field_name().as_deref().map(str::to_ascii_lowercase).as_deref() {
                Some("query") => multipart_queries.push(String::from_utf8_lossy(part.content).into_owned()),
                Some("operations") => match strict_json(part.content) {
                    Ok(value) if operations.is_none() => operations = Some(value),
                    Ok(_) => return Err("the multipart body has more than one operations field".into()),
                    Err(e) => return Err(format!("the multipart body's operations field is not JSON: {e}")),
                },
                _ => {}
            }
        }
    }
    if overrides_method(media.as_deref(), json.as_deref(), body) {
        return Err(
            "the body carries _method, which would have the upstream run another method than policy decided (Rack, Laravel and method-override read it)"
                .into(),
        );
    }
    let graphql = match graphql_endpoint {
        false => {
            let carriers = graphql::OffEndpoint {
                // A form body's fields too: express-graphql reads a urlencoded POST's `query`.
                query: action
                    .query
                    .iter()
                    .chain(&form)
                    .filter(|(n, _)| n == "query")
                    .map(|(_, v)| v.as_str())
                    .chain(multipart_queries.iter().map(String::as_str))
                    .collect(),
                json: json.as_deref().or(operations.as_ref()),
                document: (media.as_deref() == Some("application/graphql"))
                    .then(|| std::str::from_utf8(body).ok())
                    .flatten(),
            };
            graphql::off_endpoint(carriers).transpose()?
        }
        true => {
            let from_query = || {
                let mut texts = action.query.iter().filter(|(n, _)| n == "query").map(|(_, v)| v.as_str());
                match (texts.next(), texts.next()) {
                    (Some(_), Some(_)) => Err("the query string carries \"query\" twice".to_string()),
                    (text, _) => Ok(text),
                }
            };
            if !body.is_empty() && action.query.iter().any(|(n, _)| n == "query") {
                return Err(
                    "the GraphQL document is both in the query string and in the body, and servers differ on which they run"
                        .into(),
                );
            }
            if !multipart_queries.is_empty() {
                return Err("the multipart body carries a query field; send the operation as JSON (or as the multipart request spec's operations field)".into());
            }
            let carrier = match (json.as_deref().or(operations.as_ref()), media.as_deref()) {
                (Some(value), _) => Some(Carrier::Json(value)),
                (None, Some("application/graphql")) => Some(Carrier::Document(
                    std::str::from_utf8(body).map_err(|_| "the GraphQL document is not UTF-8".to_string())?,
                )),
                (None, _) if body.is_empty() => from_query()?.map(Carrier::Query),
                (None, _) => {
                    return Err("a GraphQL request's body must be JSON or application/graphql".into());
                }
            };
            match carrier {
                Some(carrier) => Some(graphql::operation(carrier)?),
                None => None,
            }
        }
    };
    action.body = BodySummary {
        content_type: media,
        length: Some(body.len() as u64),
        json,
        json_unread,
        form,
        graphql,
        digest: (!body.is_empty()).then(|| hex::encode(Sha256::digest(body))),
        excerpt: (!body.is_empty()).then(|| excerpt(body)),
    };
    Ok(())
}

/// The GraphQL-over-WebSocket messages a client sends that carry no operation, in the two
/// protocols servers speak (graphql-ws's `graphql-transport-ws`, and Apollo's older
/// `subscriptions-transport-ws`).
const GRAPHQL_WS_CONTROL: [&str; 6] = ["connection_init", "ping", "pong", "complete", "stop", "connection_terminate"];

/// Fills `action.body` from a message the client sends on a WebSocket, as a request's body is:
/// its JSON (any JSON value, text or binary). A message that is not JSON is unread: servers frame
/// their own messages (Socket.IO's `42[…]`, STOMP, msgpack), so refusing JSON rules hold for it.
/// A graphql-ws `subscribe` (or `start`) message is GraphQL on any socket: its operation meets the
/// GraphQL rules and its `payload` (`query`, `variables`) the JSON ones, as a POST's body would.
/// On a GraphQL socket (`graphql_socket`), a message that is not one of that protocol's is refused:
/// sluice does not guess what the server will run.
pub fn read_message(action: &mut HttpAction, message: &[u8], graphql_socket: bool) -> Result<(), String> {
    let (json, json_unread) = match strict_json(message) {
        Ok(value) => (Some(Arc::new(value)), None),
        Err(e) if e.contains("twice") => return Err(format!("the message {e}")),
        Err(_) if message.is_empty() => (None, None),
        Err(e) => (
            None,
            Some(match crate::charset::wide(message) {
                Some(encoding) => format!("it is {encoding}, and sluice reads JSON in UTF-8"),
                None if looks_like_json(message) => e,
                None => "it is not JSON, and sluice reads a message's fields only in JSON".to_string(),
            }),
        ),
    };
    let envelope = json.as_deref().and_then(Value::as_object);
    let kind = envelope.and_then(|e| e.get("type")).and_then(Value::as_str);
    let payload = envelope.and_then(|e| e.get("payload"));
    let (graphql, json) = match (kind, payload) {
        (Some("subscribe" | "start"), Some(payload @ Value::Object(_))) => {
            (Some(graphql::operation(Carrier::Json(payload))?), Some(Arc::new(payload.clone())))
        }
        (Some("subscribe" | "start"), _) if graphql_socket => {
            return Err("a GraphQL subscribe message without a payload object".into());
        }
        (Some(kind), _) if graphql_socket && !GRAPHQL_WS_CONTROL.contains(&kind) => {
            return Err(format!(
                "a GraphQL WebSocket message of type {:?}, which sluice does not know",
                crate::reply::quoted_name(kind)
            ));
        }
        (None, _) if graphql_socket => {
            return Err("a message on a GraphQL socket must be a graphql-ws JSON object with a \"type\"".into());
        }
        _ => (None, json),
    };
    action.body = BodySummary {
        content_type: None,
        length: Some(message.len() as u64),
        json,
        json_unread,
        form: Vec::new(),
        graphql,
        digest: Some(hex::encode(Sha256::digest(message))),
        excerpt: (!message.is_empty()).then(|| excerpt(message)),
    };
    Ok(())
}

/// Whether the body names a method to run in place of the request's: `_method` as a form field
/// (a body with no declared type is read as a form too, as Rack does), as a multipart part, or as
/// a top-level JSON key.
fn overrides_method(media: Option<&str>, json: Option<&Value>, body: &[u8]) -> bool {
    // A part named _method (or a name PHP turns into it), however its disposition is spelled.
    let names = [b'_', b'.', b' ', b'['].map(|first| [&[first][..], b"method"].concat());
    let needles: Vec<Vec<u8>> =
        names.iter().flat_map(|name| [[name, &b"\""[..]].concat(), [&b"="[..], name].concat()]).collect();
    carries_field(media, json, body, is_method_override, &needles)
}

/// Whether the body names another user to act as (`sudo`, as a field of JSON, a form or a
/// multipart body).
fn acts_as_another(media: Option<&str>, json: Option<&Value>, body: &[u8]) -> bool {
    let needles = [b"\"sudo\"".to_vec(), b"=sudo;".to_vec(), b"=sudo\r".to_vec(), b"=sudo\n".to_vec()];
    carries_field(media, json, body, is_acting_as, &needles)
}

/// Whether the body has a field `is` reads as the one it means: a key of its JSON object, a
/// form field, or a multipart part whose disposition (in lower case) holds one of `needles`.
fn carries_field(
    media: Option<&str>,
    json: Option<&Value>,
    body: &[u8],
    is: fn(&str) -> bool,
    needles: &[Vec<u8>],
) -> bool {
    if json.and_then(Value::as_object).is_some_and(|object| object.keys().any(|k| is(k))) {
        return true;
    }
    match media {
        None | Some("application/x-www-form-urlencoded") => form_urlencoded::parse(body).any(|(name, _)| is(&name)),
        Some("multipart/form-data") => {
            let lower = body.to_ascii_lowercase();
            needles.iter().any(|needle| memchr::memmem::find(&lower, needle).is_some())
        }
        _ => false,
    }
}

/// Whether a parameter name is `_method` as a framework reads it: without case, and as PHP
/// rewrites names (leading blanks dropped; a space, `.` or `[` made `_`).
pub fn is_method_override(name: &str) -> bool {
    // Trailing blanks too: PHP makes them `_`, but a framework that trims reads `_method`.
    sluice_core::http::parameter_name(name.trim_end()) == "_method"
}

/// Whether a query parameter names another user for the request to act as (GitLab's `sudo`).
pub fn is_acting_as(name: &str) -> bool {
    sluice_core::http::parameter_name(name.trim_end()) == "sudo"
}

/// Whether a body begins as a JSON object or array does (a server may read it as JSON whatever
/// its declared type).
pub fn looks_like_json(body: &[u8]) -> bool {
    body.iter().find(|b| !b.is_ascii_whitespace()).is_some_and(|b| matches!(b, b'{' | b'['))
}

fn excerpt(body: &[u8]) -> String {
    let cut = &body[..body.len().min(EXCERPT)];
    let mut text = String::from_utf8_lossy(cut).into_owned();
    if body.len() > EXCERPT {
        text.push('…');
    }
    text
}

/// JSON with every object's keys distinct.
pub fn strict_json(body: &[u8]) -> Result<Value, String> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = de.deserialize_any(StrictVisitor).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())?;
    Ok(value)
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        // Keys as servers that ignore case compare them (Go's encoding/json, Jackson's option):
        // `amount` and `AMOUNT` are one field to them, two to a JSON pointer.
        let mut folded = std::collections::HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value()?;
            if let Some(earlier) = folded.insert(sluice_core::http::fold_name(&key), key.clone()) {
                return Err(de::Error::custom(if earlier == key {
                    format!("has the key {key:?} twice in one object")
                } else {
                    format!(
                        "has the keys {earlier:?} and {key:?} in one object: servers that ignore case read one key twice"
                    )
                }));
            }
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

struct Strict(Value);

impl<'de> serde::Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Strict, D::Error> {
        d.deserialize_any(StrictVisitor).map(Strict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_websocket_message_is_read_as_a_body_and_graphql_ws_envelopes_are_opened() {
        use sluice_core::http::GraphqlKind;
        let socket = HttpAction::new("GET", "/graphql").unwrap().message_on_socket();
        let read = |message: &[u8], graphql: bool| {
            let mut action = socket.clone();
            read_message(&mut action, message, graphql).map(|()| action.body)
        };
        let subscribe = br#"{"id":"1","type":"subscribe","payload":{"query":"mutation { a }","variables":{"n":9}}}"#;
        let body = read(subscribe, true).unwrap();
        assert_eq!(body.graphql.unwrap().kind, GraphqlKind::Mutation);
        assert_eq!(body.json.unwrap()["variables"]["n"], 9, "JSON rules read the payload, as a POST's body");
        // On any socket: the operation is GraphQL wherever graphql-ws is spoken.
        let start = br#"{"id":"1","type":"start","payload":{"query":"subscription { a }"}}"#;
        assert_eq!(read(start, false).unwrap().graphql.unwrap().kind, GraphqlKind::Subscription);
        assert!(read(br#"{"type":"start","payload":{"query":"{ a } { b }"}}"#, false).is_err());
        assert!(read(br#"{"type":"connection_init","payload":{}}"#, true).unwrap().graphql.is_none());
        for refused in [
            &br#"{"type":"execute","payload":{"query":"{ a }"}}"#[..],
            br#"{"query":"mutation { a }"}"#,
            br#"{"type":"subscribe","payload":[{"query":"{ a }"}]}"#,
            br#"{"type":"subscribe","payload":{"query":"{ a } { b }"}}"#,
            b"mutation { a }",
        ] {
            assert!(read(refused, true).is_err(), "{}", String::from_utf8_lossy(refused));
        }
        // Off a GraphQL socket: any JSON value is read; what is not JSON, text or binary, is
        // unread (refusing JSON rules hold for it), and is never read as a form.
        assert_eq!(read(br#"{"op":"drop"}"#, false).unwrap().json.unwrap()["op"], "drop");
        assert_eq!(*read(br#""drop""#, false).unwrap().json.unwrap(), "drop");
        for unread in [&b"op=drop"[..], b"42[\"x\",{\"op\":\"drop\"}]", b"\x82\xa2op\xa4drop"] {
            let body = read(unread, false).unwrap();
            assert!(body.json.is_none() && body.json_unread.is_some() && body.form.is_empty());
        }
        assert!(read(b"", false).unwrap().json_unread.is_none());
        assert!(read(br#"{"op":"list","op":"drop"}"#, false).is_err());
    }

    #[test]
    fn json_with_a_key_twice_is_refused_whatever_its_declared_type() {
        assert!(strict_json(br#"{"a":{"b":1,"c":[1,{"d":2}]}}"#).is_ok());
        let mut action = HttpAction::new("POST", "/x").unwrap();
        let err = read_body(&mut action, Some("text/plain"), br#"{"role":"user","role":"admin"}"#, false).unwrap_err();
        assert!(err.contains("\"role\" twice"), "{err}");
        let err = read_body(&mut action, Some("application/json"), b"{nope", false).unwrap_err();
        assert!(err.contains("declared JSON"), "{err}");
        read_body(&mut action, Some("text/plain"), b"{not json, just text", false).unwrap();
        assert_eq!(action.body.json, None);
        assert!(action.body.json_unread.is_some(), "it looks like JSON: a server may think so too");
        read_body(&mut action, Some("text/plain"), b"\xEF\xBB\xBF{\"force\": true}", false).unwrap();
        assert_eq!(action.body.json_unread.as_deref(), Some("it begins with a byte-order mark"));
        let utf16: Vec<u8> = "{\"force\": true}".encode_utf16().flat_map(u16::to_le_bytes).collect();
        read_body(&mut action, None, &utf16, false).unwrap();
        assert_eq!(action.body.json_unread.as_deref(), Some("it is UTF-16LE, and sluice reads JSON in UTF-8"));
        read_body(&mut action, Some("text/plain"), b"plain words", false).unwrap();
        assert_eq!(action.body.json_unread, None);
        read_body(&mut action, Some("application/json; charset=utf-8"), br#" {"force": true}"#, false).unwrap();
        assert_eq!(action.body.json.as_deref(), Some(&serde_json::json!({"force": true})));
        assert_eq!(action.body.content_type.as_deref(), Some("application/json"));
        assert_eq!(action.body.digest.as_ref().map(String::len), Some(64));
    }

    #[test]
    fn a_body_declared_in_a_charset_that_writes_ascii_otherwise_is_refused() {
        let mut action = HttpAction::new("POST", "/v1/payments").unwrap();
        for content_type in [
            "application/json; charset=utf-7",
            "application/x-www-form-urlencoded; charset=UTF-16",
            "text/plain;charset=\"cp037\"",
        ] {
            let err = read_body(&mut action, Some(content_type), br#"{"+AGE-mount": 25000}"#, false).unwrap_err();
            assert!(err.contains("send it in UTF-8"), "{content_type}: {err}");
        }
        for content_type in
            ["application/json; charset=utf-8", "application/json; charset=ISO-8859-1", "application/json"]
        {
            read_body(&mut action, Some(content_type), br#"{"amount": 25000}"#, false).unwrap();
        }
        // A request without a body declares nothing it could spell.
        read_body(&mut action, Some("text/plain; charset=utf-7"), b"", false).unwrap();
    }

    #[test]
    fn graphql_in_a_multipart_form_is_read_as_in_json() {
        let form = |fields: &[(&str, &str)]| {
            let mut body = String::new();
            for (name, value) in fields {
                body += &format!("--b\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n");
            }
            body + "--b\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a.txt\"\r\n\r\nmutation { no }\r\n--b--\r\n"
        };
        let content_type = Some("multipart/form-data; boundary=b");
        let mut action = HttpAction::new("POST", "/upload").unwrap();
        let operations = r#"{"query": "mutation Up($f: Upload!) { upload(file: $f) }", "variables": {"f": null}}"#;
        read_body(&mut action, content_type, form(&[("operations", operations), ("map", "{}")]).as_bytes(), false)
            .unwrap();
        let op = action.body.graphql.as_ref().expect("read off the endpoint");
        assert_eq!((op.kind.as_str(), op.fields.clone()), ("mutation", vec!["upload".to_string()]));
        read_body(&mut action, content_type, form(&[("query", "mutation { reset }")]).as_bytes(), false).unwrap();
        assert_eq!(action.body.graphql.as_ref().map(|op| op.kind.as_str()), Some("mutation"));
        // On a GraphQL endpoint, the upload is its operation.
        read_body(&mut action, content_type, form(&[("operations", operations)]).as_bytes(), true).unwrap();
        assert_eq!(action.body.graphql.as_ref().map(|op| op.fields.clone()), Some(vec!["upload".to_string()]));
        let twice = form(&[("operations", operations), ("operations", operations)]);
        assert!(read_body(&mut action, content_type, twice.as_bytes(), false).is_err());
        // A file's content is no field: a document in it is not read.
        read_body(&mut action, content_type, form(&[("name", "x")]).as_bytes(), false).unwrap();
        assert!(action.body.graphql.is_none());
    }

    #[test]
    fn another_user_named_in_the_body_is_refused() {
        let mut action = HttpAction::new("POST", "/api/v4/projects").unwrap();
        let multipart = b"--b\r\nContent-Disposition: form-data; name=\"sudo\"\r\n\r\nroot\r\n--b--\r\n";
        for (content_type, body) in [
            ("application/json", &br#"{"name": "x", "sudo": "root"}"#[..]),
            ("application/x-www-form-urlencoded", b"name=x&SUDO=root"),
            ("multipart/form-data; boundary=b", multipart),
        ] {
            let err = read_body(&mut action, Some(content_type), body, false).unwrap_err();
            assert!(err.contains("sudo"), "{content_type}: {err}");
        }
        read_body(&mut action, Some("application/x-www-form-urlencoded"), b"pseudo=ann&sudoku=1", false).unwrap();
        assert!(is_acting_as("sudo") && is_acting_as(" Sudo ") && !is_acting_as("pseudo"));
    }

    #[test]
    fn a_method_named_in_the_body_is_refused() {
        let mut action = HttpAction::new("POST", "/v1/customers/1").unwrap();
        let form = Some("application/x-www-form-urlencoded");
        for (media, body) in [
            (form, &b"name=x&_method=DELETE"[..]),
            (form, b"%5Fmethod=DELETE"),
            (form, b"_METHOD=delete"),
            (None, b"_method=DELETE"),
            (Some("application/json"), br#"{"_method": "DELETE"}"#),
            (
                Some("multipart/form-data; boundary=b"),
                b"--b\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--b--",
            ),
            // Names PHP rewrites to _method.
            (form, b".method=DELETE"),
            (form, b"_method%20=DELETE"),
            (form, b"[method=DELETE"),
            (
                Some("multipart/form-data; boundary=b"),
                b"--b\r\nContent-Disposition: form-data; name=\".method\"\r\n\r\nDELETE\r\n--b--",
            ),
        ] {
            let err = read_body(&mut action, media, body, false).unwrap_err();
            assert!(err.contains("_method"), "{err}");
        }
        read_body(&mut action, form, b"name=x&method=card", false).unwrap();
        read_body(&mut action, Some("application/json"), br#"{"a": {"_method": "kept"}}"#, false).unwrap();
    }

    #[test]
    fn keys_that_differ_only_in_case_are_one_key_twice() {
        let mut action = HttpAction::new("POST", "/x").unwrap();
        for body in [&br#"{"amount":"1","AMOUNT":"25000"}"#[..], br#"{"a":[{"Key":1,"\u212Aey":2}]}"#] {
            let err = read_body(&mut action, Some("application/json"), body, false).unwrap_err();
            assert!(err.contains("servers that ignore case"), "{err}");
        }
        read_body(&mut action, Some("application/json"), br#"{"a":{"k":1},"b":{"k":2}}"#, false).unwrap();
    }

    #[test]
    fn form_fields_are_read_and_unread_fields_are_said_so() {
        let mut action = HttpAction::new("POST", "/x").unwrap();
        read_body(&mut action, Some("application/x-www-form-urlencoded"), b"amount=25000&note=a+b", false).unwrap();
        assert_eq!(action.body.form, [("amount".into(), "25000".into()), ("note".into(), "a b".into())]);
        read_body(&mut action, None, b"amount=1", false).unwrap();
        assert_eq!(action.body.form, [("amount".into(), "1".into())]);
        read_body(&mut action, Some("application/xml"), b"<p><amount>25000</amount></p>", false).unwrap();
        assert!(action.body.form.is_empty());
        assert!(action.body.json_unread.as_deref().is_some_and(|w| w.contains("application/xml")));
        read_body(&mut action, Some("text/plain"), b"hello", false).unwrap();
        assert_eq!(action.body.json_unread, None);
    }

    #[test]
    fn a_graphql_document_in_the_url_and_the_body_is_refused() {
        let mut action = HttpAction::new("POST", "/graphql?query=mutation%7Bdrop%7D").unwrap();
        let err = read_body(&mut action, Some("application/json"), br#"{"query":"{me{id}}"}"#, true).unwrap_err();
        assert!(err.contains("both in the query string and in the body"), "{err}");
        let mut get = HttpAction::new("GET", "/graphql?query=%7Bme%7Bid%7D%7D").unwrap();
        read_body(&mut get, None, b"", true).unwrap();
        assert!(get.body.graphql.is_some());
    }

    #[test]
    fn graphql_off_an_endpoint_is_read_when_it_is_graphql() {
        let read = |method: &str, target: &str, media: Option<&str>, body: &[u8]| {
            let mut action = HttpAction::new(method, target).unwrap();
            read_body(&mut action, media, body, false).map(|()| action)
        };
        // A mutation in a GET's query string is no read.
        let get = read("GET", "/api/gql?query=%23c%0A,mutation%7BdropAll%7D", None, b"").unwrap();
        let op = get.body.graphql.as_ref().unwrap();
        assert_eq!(
            (op.kind, op.on_endpoint, op.fields.as_slice()),
            (sluice_core::http::GraphqlKind::Mutation, false, &["dropAll".to_string()][..])
        );
        assert!(!get.reads_only());
        let form = read("POST", "/x", Some("application/x-www-form-urlencoded"), b"query=mutation%7Bd%7D").unwrap();
        assert_eq!(form.body.graphql.map(|op| op.kind), Some(sluice_core::http::GraphqlKind::Mutation));
        // A query found off an endpoint makes no other method a read.
        let post = read("POST", "/v1/search", Some("application/json"), br#"{"query":"{ me { id } }"}"#).unwrap();
        assert!(post.body.graphql.is_some() && !post.reads_only());
        assert!(read("GET", "/v1/search?query=%7B%20me%20%7D", None, b"").unwrap().reads_only());
        // Text that is not GraphQL is nothing to it.
        for target in ["/v1/search?query=status:open", "/v1/search?query=hello%20world", "/v1/search?query="] {
            assert!(read("GET", target, None, b"").unwrap().body.graphql.is_none(), "{target}");
        }
        let rest = read("POST", "/v1/search", Some("application/json"), br#"{"query":{"match":"x"}}"#).unwrap();
        assert!(rest.body.graphql.is_none());
        // What is GraphQL but not one readable operation is refused.
        for (method, target, media, body, why) in [
            ("GET", "/x?query=query%20a%7Bb%7D%20mutation%20c%7Bd%7D", None, &b""[..], "several operations"),
            ("POST", "/x", Some("application/json"), br#"[{"query":"mutation { d }"}]"#, "batch"),
            ("POST", "/x?query=%7Ba%7D", Some("application/graphql"), b"mutation { d }", "more than one place"),
            (
                "POST",
                "/x?query=%7Ba%7D",
                Some("application/x-www-form-urlencoded"),
                b"query=%7Bb%7D",
                "more than one place",
            ),
        ] {
            let err = read(method, target, media, body).unwrap_err();
            assert!(err.contains(why), "{target}: {err}");
        }
    }

    #[test]
    fn graphql_is_read_from_json_documents_and_the_query_string() {
        let mut post = HttpAction::new("POST", "/graphql").unwrap();
        read_body(&mut post, Some("application/json"), br#"{"query":"mutation { deleteUser(id: 1) }"}"#, true).unwrap();
        assert_eq!(post.body.graphql.as_ref().unwrap().fields, ["deleteUser"]);
        read_body(&mut post, Some("application/graphql"), b"{ invoices { id } }", true).unwrap();
        assert_eq!(post.body.graphql.as_ref().unwrap().fields, ["invoices"]);
        assert!(read_body(&mut post, Some("text/plain"), b"{ invoices }", true).is_err());
        let mut get = HttpAction::new("GET", "/graphql?query=%7Bme%7Bid%7D%7D").unwrap();
        read_body(&mut get, None, b"", true).unwrap();
        assert_eq!(get.body.graphql.as_ref().unwrap().fields, ["me"]);
        let mut twice = HttpAction::new("GET", "/graphql?query=%7Ba%7D&query=%7Bb%7D").unwrap();
        assert!(read_body(&mut twice, None, b"", true).unwrap_err().contains("twice"));
    }
}
