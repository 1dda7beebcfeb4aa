//! Plain data: the tweets that flow through buyline and the catalog that decorates them.
//!
//! These are serde types with no behaviour beyond small constructors; the stages that act on
//! them live in `sources`, `decorate` and `fanout`.

mod catalog;
mod order;
mod tweet;

pub use catalog::{Catalog, Money, Partner, PartnerKind, Platform, Product, SaleWindow};
pub use order::{Address, CardBrand, CardSummary, Order, OrderStatus};
pub use tweet::{Author, SeqRange, SequencedTweet, Tweet};
