//! Finding `#hashtags` in tweet text, for objects that do not list their hashtags.
//!
//! The rules follow what people expect from Twitter: a tag is `#` followed by letters, digits,
//! underscores and combining marks (any script), starts a word (`a#b` is not a tag), is not
//! all digits (`#1` is a ranking, `#1st` is a tag), and is never read out of a link
//! (`https://example.com/#top`).

/// The hashtags of `text` without `#`, as written, in order of appearance (repeats kept, as
/// Twitter's entities keep them).
///
/// Cost: one pass over the text; allocates only for the tags found.
pub fn extract_hashtags(text: &str) -> Vec<String> {
    let mut tags = Vec::new();
    for word in text.split_whitespace() {
        if is_link(word) {
            continue;
        }
        let mut previous: Option<char> = None;
        let mut chars = word.char_indices().peekable();
        while let Some((at, c)) = chars.next() {
            let starts_tag = c == '#' && !previous.is_some_and(|p| is_tag_char(p) || p == '&');
            previous = Some(c);
            if !starts_tag {
                continue;
            }
            let start = at + c.len_utf8();
            let mut end = start;
            while let Some(&(i, next)) = chars.peek() {
                if !is_tag_char(next) {
                    break;
                }
                end = i + next.len_utf8();
                previous = Some(next);
                chars.next();
            }
            let tag = &word[start..end];
            if !tag.is_empty() && !tag.chars().all(|c| c.is_numeric()) {
                tags.push(tag.to_owned());
            }
        }
    }
    tags
}

/// A whitespace-separated word that is a link: a `#` in it is a URL fragment, not a tag.
fn is_link(word: &str) -> bool {
    let lower = |prefix: &str| {
        word.get(..prefix.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(prefix))
    };
    lower("http://") || lower("https://") || lower("www.")
}

/// A character that continues a hashtag.
fn is_tag_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || is_combining_mark(c)
}

/// Combining marks are not alphanumeric in Unicode's sense, but they are part of a word:
/// `#cafe\u{301}` (decomposed `café`) or the virama in `#हिन्दी` must not end the tag. std has no
/// general-category lookup, so this lists the blocks where marks matter most.
fn is_combining_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' // combining diacritical marks (Latin, Greek, Cyrillic)
        | '\u{0483}'..='\u{0489}' // Cyrillic
        | '\u{0591}'..='\u{05BD}' | '\u{05BF}' | '\u{05C1}'..='\u{05C2}' | '\u{05C4}'..='\u{05C5}' | '\u{05C7}' // Hebrew points
        | '\u{0610}'..='\u{061A}' | '\u{064B}'..='\u{065F}' | '\u{0670}' | '\u{06D6}'..='\u{06DC}' | '\u{06DF}'..='\u{06E4}' | '\u{06E7}'..='\u{06E8}' | '\u{06EA}'..='\u{06ED}' // Arabic
        | '\u{0900}'..='\u{0903}' | '\u{093A}'..='\u{094F}' | '\u{0951}'..='\u{0957}' | '\u{0962}'..='\u{0963}' // Devanagari
        | '\u{0981}'..='\u{0983}' | '\u{09BC}'..='\u{09CD}' | '\u{09D7}' | '\u{09E2}'..='\u{09E3}' // Bengali
        | '\u{0A01}'..='\u{0A03}' | '\u{0A3C}'..='\u{0A51}' | '\u{0A70}'..='\u{0A71}' | '\u{0A75}' // Gurmukhi
        | '\u{0A81}'..='\u{0A83}' | '\u{0ABC}'..='\u{0ACD}' | '\u{0AE2}'..='\u{0AE3}' // Gujarati
        | '\u{0B01}'..='\u{0B03}' | '\u{0B3C}'..='\u{0B57}' | '\u{0B62}'..='\u{0B63}' // Oriya
        | '\u{0B82}' | '\u{0BBE}'..='\u{0BCD}' | '\u{0BD7}' // Tamil
        | '\u{0C00}'..='\u{0C04}' | '\u{0C3C}'..='\u{0C56}' | '\u{0C62}'..='\u{0C63}' // Telugu
        | '\u{0C81}'..='\u{0C83}' | '\u{0CBC}'..='\u{0CD6}' | '\u{0CE2}'..='\u{0CE3}' // Kannada
        | '\u{0D00}'..='\u{0D03}' | '\u{0D3B}'..='\u{0D57}' | '\u{0D62}'..='\u{0D63}' // Malayalam
        | '\u{0E31}' | '\u{0E34}'..='\u{0E3A}' | '\u{0E47}'..='\u{0E4E}' // Thai
        | '\u{200C}'..='\u{200D}' // zero-width non-joiner and joiner (Persian, Indic)
        | '\u{3099}'..='\u{309A}' // Japanese (semi-)voiced sound marks
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_found_in_order_without_the_hash() {
        assert_eq!(
            extract_hashtags("#tbt to the best gig, #music #Live!"),
            ["tbt", "music", "Live"]
        );
    }

    #[test]
    fn tags_end_at_punctuation() {
        assert_eq!(
            extract_hashtags("(#sale), #new-drop #a.b"),
            ["sale", "new", "a"]
        );
    }

    #[test]
    fn all_digit_tags_are_not_tags() {
        assert_eq!(extract_hashtags("we are #1 and #2024 but #1st"), ["1st"]);
    }

    #[test]
    fn a_hash_inside_a_word_does_not_start_a_tag() {
        assert_eq!(
            extract_hashtags("c#sharp &#39; me#too"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn fragments_of_links_are_not_tags() {
        assert_eq!(
            extract_hashtags("read https://example.com/#top and www.x.com/#a then #real"),
            ["real"]
        );
    }

    #[test]
    fn tags_are_unicode_aware() {
        assert_eq!(
            extract_hashtags("#café #cafe\u{301} #日本 #हिन्दी #straße_2"),
            ["café", "cafe\u{301}", "日本", "हिन्दी", "straße_2"]
        );
    }

    #[test]
    fn a_lone_hash_or_double_hash_is_handled() {
        assert_eq!(extract_hashtags("# ## ##tag"), ["tag"]);
    }

    #[test]
    fn repeats_are_kept() {
        assert_eq!(extract_hashtags("#a #a"), ["a", "a"]);
    }
}
