//! The `0|<regex>` pattern: a bounded regex matched against the whole name.

use super::{ChatError, Limits};
use regex::{Regex, RegexBuilder};

/// A compiled `List` pattern. The match is anchored: a name is listed only if the pattern
/// matches all of it (`ab` lists `ab`, not `cab`). The empty pattern lists every name.
pub(super) enum NamePattern {
    All,
    Whole(Regex),
}

impl NamePattern {
    /// Checks and compiles `pattern`: first its length, then its syntax and compiled size.
    pub(super) fn compile(limits: &Limits, pattern: &str) -> Result<NamePattern, ChatError> {
        if pattern.len() > limits.max_pattern_bytes as usize {
            return Err(ChatError::PatternTooLong {
                max: limits.max_pattern_bytes,
            });
        }
        if pattern.is_empty() {
            return Ok(NamePattern::All);
        }
        // The pattern alone must be valid before it is wrapped: `a)|(b` is invalid, but its
        // wrapped form `^(?:a)|(b)$` would compile and no longer be anchored.
        build(limits, pattern)?;
        Ok(NamePattern::Whole(build(
            limits,
            &format!("^(?:{pattern})$"),
        )?))
    }

    pub(super) fn matches(&self, name: &str) -> bool {
        match self {
            NamePattern::All => true,
            NamePattern::Whole(regex) => regex.is_match(name),
        }
    }
}

fn build(limits: &Limits, pattern: &str) -> Result<Regex, ChatError> {
    let limit = limits.max_regex_compiled_bytes as usize;
    RegexBuilder::new(pattern)
        .size_limit(limit)
        .dfa_size_limit(limit)
        .build()
        .map_err(|e| ChatError::BadPattern(short_message(&e)))
}

/// One line for the user. `regex` reports syntax errors over several lines (the pattern, a
/// caret, then `error: <what>`); only the last says what is wrong.
fn short_message(error: &regex::Error) -> String {
    match error {
        regex::Error::CompiledTooBig(limit) => {
            format!("pattern too complex (compiled size over {limit} bytes)")
        }
        other => {
            let text = other.to_string();
            let last = text.lines().last().unwrap_or_default();
            last.strip_prefix("error: ").unwrap_or(last).to_string()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listed(pattern: &str, name: &str) -> bool {
        NamePattern::compile(&Limits::default(), pattern)
            .unwrap()
            .matches(name)
    }

    #[test]
    fn match_is_anchored_to_the_whole_name() {
        assert!(listed("ab", "ab"));
        assert!(!listed("ab", "cab"));
        assert!(!listed("ab", "abc"));
        assert!(listed("a|cab", "cab"));
        assert!(listed(".*b", "cab"));
    }

    #[test]
    fn empty_pattern_lists_all() {
        assert!(listed("", "anyone"));
    }

    #[test]
    fn unbalanced_group_cannot_escape_the_anchors() {
        let err = NamePattern::compile(&Limits::default(), "a)|(b")
            .err()
            .unwrap();
        assert!(matches!(err, ChatError::BadPattern(_)));
    }

    #[test]
    fn syntax_error_is_one_short_line() {
        let Err(ChatError::BadPattern(message)) = NamePattern::compile(&Limits::default(), "(")
        else {
            panic!("expected BadPattern");
        };
        assert!(!message.contains('\n'), "{message:?}");
        assert!(message.contains("unclosed group"), "{message:?}");
    }

    #[test]
    fn compiled_size_is_bounded() {
        let limits = Limits {
            max_regex_compiled_bytes: 1000,
            ..Limits::default()
        };
        let Err(ChatError::BadPattern(message)) = NamePattern::compile(&limits, r"\w{50}") else {
            panic!("expected BadPattern");
        };
        assert!(message.contains("too complex"), "{message:?}");
    }

    #[test]
    fn pattern_length_is_checked_first() {
        let limits = Limits {
            max_pattern_bytes: 3,
            ..Limits::default()
        };
        assert_eq!(
            NamePattern::compile(&limits, "((((").err(),
            Some(ChatError::PatternTooLong { max: 3 })
        );
        assert!(NamePattern::compile(&limits, "a.b").is_ok());
    }
}
