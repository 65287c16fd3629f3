//! A multipart body's parts, split by the boundary its Content-Type declares: a response's parts
//! are each checked for a packed format, a request's form fields for a GraphQL operation.

use memchr::memmem;

/// The boundary a multipart Content-Type declares (`multipart/mixed; boundary=part`).
pub fn boundary(content_type: &[u8]) -> Option<String> {
    let content_type = String::from_utf8_lossy(content_type);
    let mut params = content_type.split(';');
    if !params.next()?.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.find_map(|param| {
        let (name, value) = param.split_once('=')?;
        name.trim().eq_ignore_ascii_case("boundary").then(|| value.trim().trim_matches('"').to_string())
    })
}

/// One part: its header lines and its content.
pub struct Part<'a> {
    pub headers: &'a [u8],
    pub content: &'a [u8],
}

impl Part<'_> {
    /// The form field a `Content-Disposition: form-data` part is, by its name (`None` for a part
    /// without one, or a file: a part with a `filename`).
    pub fn field_name(&self) -> Option<String> {
        let headers = String::from_utf8_lossy(self.headers);
        let disposition = headers
            .lines()
            .find_map(|line| {
                line.split_once(':').filter(|(n, _)| n.trim().eq_ignore_ascii_case("content-disposition"))
            })?
            .1;
        let mut params = disposition.split(';').map(str::trim);
        if !params.next()?.eq_ignore_ascii_case("form-data") {
            return None;
        }
        let params: Vec<(String, String)> = params
            .filter_map(|p| p.split_once('='))
            .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().trim_matches('"').to_string()))
            .collect();
        if params.iter().any(|(n, _)| n.starts_with("filename")) {
            return None;
        }
        params.into_iter().find(|(n, _)| n == "name").map(|(_, v)| v)
    }
}

/// The parts of `body`, in order: what lies between one `--boundary` line and the next, its
/// header lines up to the first blank line, its content up to the line break before the next.
pub fn parts<'a>(body: &'a [u8], boundary: &str) -> Vec<Part<'a>> {
    let delimiter = format!("--{boundary}");
    let starts: Vec<usize> = memmem::find_iter(body, delimiter.as_bytes()).collect();
    starts
        .iter()
        .enumerate()
        .filter_map(|(i, &at)| {
            let part = &body[at + delimiter.len()..starts.get(i + 1).copied().unwrap_or(body.len())];
            let (headers_end, content_start) = match memmem::find(part, b"\r\n\r\n") {
                Some(end) => (end, end + 4),
                None => memmem::find(part, b"\n\n").map(|end| (end, end + 2))?,
            };
            let content = &part[content_start..];
            let content = content.strip_suffix(b"\r\n").or_else(|| content.strip_suffix(b"\n")).unwrap_or(content);
            Some(Part { headers: &part[..headers_end], content })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_split_by_the_declared_boundary_and_fields_known_by_name() {
        let body = b"--b\r\nContent-Disposition: form-data; name=\"operations\"\r\n\r\n{\"query\": \"{ a }\"}\r\n--b\r\nContent-Disposition: form-data; name=\"0\"; filename=\"a.txt\"\r\nContent-Type: text/plain\r\n\r\nfile\r\n--b\r\ncontent-disposition: FORM-DATA; name=query\n\nmutation { x }\n--b--\r\n";
        let declared = boundary(b"multipart/form-data; boundary=\"b\"").unwrap();
        let parts = parts(body, &declared);
        let fields: Vec<(Option<String>, &[u8])> = parts.iter().map(|p| (p.field_name(), p.content)).collect();
        assert_eq!(
            fields,
            [
                (Some("operations".to_string()), &b"{\"query\": \"{ a }\"}"[..]),
                (None, b"file"),
                (Some("query".to_string()), b"mutation { x }"),
            ]
        );
        assert_eq!(boundary(b"application/json; boundary=b"), None);
    }
}
