//! Timelines a client can subscribe to, and which tweets belong to each.

use std::fmt;

use crate::decorate::frame::DecoratedTweet;
use crate::error::ApiError;

/// Longest name accepted after `user:`, `tag:` or `product:`.
const MAX_NAME_LEN: usize = 128;

/// A parsed timeline name. Names are stored lower-cased: matching is case-insensitive.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Timeline {
    /// Every tweet.
    All,
    /// Tweets with a buy button (and stock events of every product).
    Buyable,
    /// Tweets by one screen name.
    User(Box<str>),
    /// Tweets carrying one hashtag.
    Tag(Box<str>),
    /// Tweets by the screen names in the subscription's `follows` list.
    Home,
    /// Stock events of one product (no tweets).
    Product(Box<str>),
}

impl Timeline {
    /// Parses the contract's timeline syntax: `all`, `buyable`, `home`, `user:<name>`,
    /// `tag:<hashtag>` (no `#`), `product:<id>`.
    pub fn parse(text: &str) -> Result<Timeline, ApiError> {
        let named = |kind: &str, name: &str| -> Result<Box<str>, ApiError> {
            if name.is_empty() || name.len() > MAX_NAME_LEN || name.chars().any(char::is_whitespace)
            {
                return Err(ApiError::bad_request(format!(
                    "timeline {kind}: needs a name of 1 to {MAX_NAME_LEN} characters without spaces"
                )));
            }
            Ok(name.to_lowercase().into_boxed_str())
        };
        match text {
            "all" => Ok(Timeline::All),
            "buyable" => Ok(Timeline::Buyable),
            "home" => Ok(Timeline::Home),
            _ => match text.split_once(':') {
                Some(("user", name)) => Ok(Timeline::User(named("user", name)?)),
                Some(("tag", name)) => {
                    let name = name.strip_prefix('#').unwrap_or(name);
                    Ok(Timeline::Tag(named("tag", name)?))
                }
                // Product ids are compared exactly, as the catalog spells them.
                Some(("product", id)) => {
                    named("product", id)?;
                    Ok(Timeline::Product(id.into()))
                }
                _ => Err(ApiError::bad_request(format!(
                    "unknown timeline {text:?}: use all, buyable, home, user:<name>, tag:<hashtag> or product:<id>"
                ))),
            },
        }
    }

    /// Whether `tweet` belongs to this timeline; `follows` is the home list (lower-case,
    /// sorted and deduplicated).
    pub fn matches(&self, tweet: &DecoratedTweet, follows: &[Box<str>]) -> bool {
        match self {
            Timeline::All => true,
            Timeline::Buyable => tweet.product.is_some(),
            Timeline::User(name) => *tweet.author == **name,
            Timeline::Tag(tag) => tweet.hashtags.iter().any(|t| t == tag),
            Timeline::Home => follows.binary_search(&tweet.author).is_ok(),
            Timeline::Product(_) => false,
        }
    }
}

impl fmt::Display for Timeline {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Timeline::All => f.write_str("all"),
            Timeline::Buyable => f.write_str("buyable"),
            Timeline::Home => f.write_str("home"),
            Timeline::User(name) => write!(f, "user:{name}"),
            Timeline::Tag(tag) => write!(f, "tag:{tag}"),
            Timeline::Product(id) => write!(f, "product:{id}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_timeline_kind() {
        assert_eq!(Timeline::parse("all").unwrap(), Timeline::All);
        assert_eq!(Timeline::parse("buyable").unwrap(), Timeline::Buyable);
        assert_eq!(Timeline::parse("home").unwrap(), Timeline::Home);
        assert_eq!(
            Timeline::parse("user:Burberry").unwrap(),
            Timeline::User("burberry".into())
        );
        assert_eq!(
            Timeline::parse("tag:NowPlaying").unwrap(),
            Timeline::Tag("nowplaying".into())
        );
        assert_eq!(
            Timeline::parse("tag:#red").unwrap(),
            Timeline::Tag("red".into())
        );
        assert_eq!(
            Timeline::parse("product:Red-Tee").unwrap(),
            Timeline::Product("Red-Tee".into())
        );
    }

    #[test]
    fn rejects_unknown_and_empty_timelines() {
        for bad in [
            "",
            "everything",
            "user:",
            "tag:",
            "user:a b",
            "product:",
            "users:x",
        ] {
            assert!(Timeline::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }
}
