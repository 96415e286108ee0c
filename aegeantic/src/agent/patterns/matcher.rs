//! Finding the first tag in text that may continue in the next chunk.

/// The first place in a text where one of a list of tags begins.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Found {
    /// Tag `tag` is whole at byte `at`.
    Tag { at: usize, tag: usize },
    /// From byte `at` the text is a proper prefix of a tag: the next chunk decides.
    Partial { at: usize },
    /// No tag begins anywhere in the text, whatever follows it.
    Nothing,
}

/// The first position where a tag is whole or may still become whole.
///
/// Because no tag is a prefix of another (the set's validation ensures it), at most one tag
/// can be whole at a position, and a position that is a tag's proper prefix is one where no
/// other tag is whole. So the position found is the same whether the text arrives whole or
/// in pieces: the rule that makes any chunking give the same segments.
///
/// `at` is always a char boundary of `text`: tags start with the first byte of a char.
pub(super) fn find<'t>(text: &str, tags: impl Iterator<Item = &'t str> + Clone) -> Found {
    let bytes = text.as_bytes();
    for at in 0..bytes.len() {
        let rest = &bytes[at..];
        for (tag, pattern) in tags.clone().enumerate() {
            let pattern = pattern.as_bytes();
            if rest.starts_with(pattern) {
                return Found::Tag { at, tag };
            }
            if pattern.starts_with(rest) {
                return Found::Partial { at };
            }
        }
    }
    Found::Nothing
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find_in(text: &str, tags: &[&str]) -> Found {
        find(text, tags.iter().copied())
    }

    #[test]
    fn whole_partial_and_none() {
        let tags = ["<tool>", "<think>"];
        assert_eq!(find_in("ab<think>c", &tags), Found::Tag { at: 2, tag: 1 });
        assert_eq!(find_in("ab<thi", &tags), Found::Partial { at: 2 });
        assert_eq!(find_in("ab<", &tags), Found::Partial { at: 2 });
        assert_eq!(find_in("a<b <tool", &tags), Found::Partial { at: 4 });
        assert_eq!(find_in("<to<tool>", &tags), Found::Tag { at: 3, tag: 0 });
        assert_eq!(find_in("plain", &tags), Found::Nothing);
        assert_eq!(find_in("", &tags), Found::Nothing);
    }

    #[test]
    fn multibyte_tags_match_on_bytes() {
        let tags = ["«思»"];
        assert_eq!(find_in("é«思»", &tags), Found::Tag { at: 2, tag: 0 });
        assert_eq!(find_in("é«", &tags), Found::Partial { at: 2 });
    }
}
