//! Plain data: the tweets that flow through buyline and the catalog that decorates them.
//!
//! These are serde types with no behaviour beyond small constructors; the stages that act on
//! them live in `sources`, `decorate` and `fanout`.

mod catalog;
mod tweet;

pub use catalog::{Catalog, Money, Partner, PartnerKind, Platform, Product, SaleWindow};
pub use tweet::{Author, Tweet};
