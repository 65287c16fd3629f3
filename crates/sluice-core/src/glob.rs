//! Shell-style name patterns for policy: `*` matches any run of characters, `?` exactly one.

/// Whether `text` matches `pattern` as a whole. Iterative with one backtrack point, so a pattern
/// of many stars costs time linear in the text, not exponential.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == b'?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn stars_and_marks() {
        assert!(glob_match("*", ""));
        assert!(glob_match("public.*", "public.orders"));
        assert!(!glob_match("public.*", "publicx.orders"));
        assert!(glob_match("dblink*", "dblink_exec"));
        assert!(glob_match("pg_ls_*dir", "pg_ls_waldir"));
        assert!(!glob_match("pg_ls_*dir", "pg_ls_dir_x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("*a*b*c*", "xxaxxbxxcxx"));
        assert!(!glob_match("*a*b*c*", "xxaxxcxxbxx"));
        assert!(glob_match("orders", "orders"));
        assert!(!glob_match("orders", "orders2"));
    }
}
