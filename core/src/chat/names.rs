//! Rules for user names and message texts.

use super::{ChatError, Limits};

/// A name is non-empty, at most `max_name_bytes` bytes, and has no whitespace, `|` (the
/// command separator) or control characters. Checked in that order.
pub(super) fn check_name(limits: &Limits, name: &str) -> Result<(), ChatError> {
    if name.is_empty() {
        return Err(ChatError::NameEmpty);
    }
    if name.len() > limits.max_name_bytes as usize {
        return Err(ChatError::NameTooLong {
            max: limits.max_name_bytes,
        });
    }
    if name
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '|')
    {
        return Err(ChatError::NameBadChar);
    }
    Ok(())
}

/// A text is non-empty and at most `max_text_chars` characters (not bytes).
pub(super) fn check_text(limits: &Limits, text: &str) -> Result<(), ChatError> {
    if text.is_empty() {
        return Err(ChatError::TextEmpty);
    }
    if text.chars().count() > limits.max_text_chars as usize {
        return Err(ChatError::TextTooLong {
            max: limits.max_text_chars,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_name_bytes: 4,
            max_text_chars: 3,
            ..Limits::default()
        }
    }

    #[test]
    fn names() {
        let l = limits();
        assert_eq!(check_name(&l, ""), Err(ChatError::NameEmpty));
        assert_eq!(check_name(&l, "abcd"), Ok(()));
        assert_eq!(
            check_name(&l, "abcde"),
            Err(ChatError::NameTooLong { max: 4 })
        );
        // 'é' is two bytes: the limit counts bytes.
        assert_eq!(check_name(&l, "abé"), Ok(()));
        assert_eq!(
            check_name(&l, "abcé"),
            Err(ChatError::NameTooLong { max: 4 })
        );
        for bad in ["a b", "a|b", "a\tb", "a\u{7}", "a\u{a0}b"] {
            assert_eq!(check_name(&l, bad), Err(ChatError::NameBadChar), "{bad:?}");
        }
        // Length is checked before characters.
        assert_eq!(
            check_name(&l, "a | b"),
            Err(ChatError::NameTooLong { max: 4 })
        );
    }

    #[test]
    fn texts() {
        let l = limits();
        assert_eq!(check_text(&l, ""), Err(ChatError::TextEmpty));
        // Three characters, six bytes: the limit counts characters.
        assert_eq!(check_text(&l, "ééé"), Ok(()));
        assert_eq!(
            check_text(&l, "abcd"),
            Err(ChatError::TextTooLong { max: 3 })
        );
        assert_eq!(check_text(&l, "a b"), Ok(()));
    }
}
