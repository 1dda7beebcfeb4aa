//! The five scenarios, one module each.

pub mod connections;
pub mod fanout;
pub mod firehose;
pub mod flash_sale;
pub mod soak;
