//! The five scenarios, one module each, and the producers two of them share.

pub mod connections;
pub mod fanout;
pub mod firehose;
pub mod flash_sale;
pub mod producer;
pub mod soak;
