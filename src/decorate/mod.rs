//! Decoration: the stage between ingest and fan-out that gives partner tweets their buy button.
//!
//! In the order a tweet meets them: [`partner_index`] holds the catalog as lookup tables (an
//! immutable snapshot, swapped whole on admin writes); [`url`] turns links into comparison
//! keys; [`button`] pre-renders each product's BUY object when the index is built; [`frame`]
//! decides a tweet's button and serialises its frame exactly once. The catalog comes from
//! [`catalog_file`] (`--catalog`) or [`demo`] (the built-in 2014 partners).

pub mod button;
pub mod catalog_file;
pub mod decorator;
pub mod demo;
pub mod frame;
pub mod partner_index;
pub mod url;
