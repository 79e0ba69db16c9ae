//! `If-Match` (RFC 9110 §13.1.1) against a resource's entity-tag, with strong
//! comparison (§8.8.3.2): `*` matches any current tag; a list matches when one of
//! its strong tags equals the current one; weak tags (`W/"..."`) never match.
//! A malformed field matches nothing (the request then fails with 412).
//! Written here because the one check needs no typed-header crate.

/// Whether `field` (an `If-Match` value) holds for `current` (`None`: no tag).
pub fn if_match(field: &str, current: Option<&str>) -> bool {
    let Some(current) = current else {
        return false;
    };
    if field.trim() == "*" {
        return true;
    }
    let mut rest = field;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            return false;
        }
        let weak = rest.starts_with("W/");
        let tagged = if weak { &rest[2..] } else { rest };
        let Some(body) = tagged.strip_prefix('"') else {
            return false;
        };
        let Some(end) = body.find('"') else {
            return false;
        };
        let tag = &tagged[..end + 2];
        if !weak && tag == current {
            return true;
        }
        rest = &body[end + 1..];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strong_comparison_over_a_list() {
        let cur = Some("\"abc\"");
        assert!(if_match("\"abc\"", cur));
        assert!(if_match("*", cur));
        assert!(if_match(" \"x\", \"abc\"", cur));
        assert!(if_match("\"x,y\", \"abc\"", cur));
        assert!(!if_match("\"abd\"", cur));
        assert!(!if_match("W/\"abc\"", cur));
        assert!(!if_match("abc", cur));
        assert!(!if_match("\"abc", cur));
        assert!(!if_match("", cur));
        assert!(!if_match("*", None));
    }
}
