//! An order like checkout's (a realistic address, an idempotency key), for the tests and
//! examples that measure the order book and store: `tests/order_memory.rs`,
//! `examples/order_store_burst.rs`. Include it with `#[path]`.

use buyline::{
    Address, CardBrand, CardSummary, Money, Order, OrderStatus, StoredOrder, hold_id_text,
    order_id_for,
};

/// Order `n`, bought by `customer`.
pub fn sample_order(n: u64, customer: String) -> StoredOrder {
    StoredOrder {
        order: Order {
            id: order_id_for(n),
            status: OrderStatus::Confirmed,
            product: "tee".into(),
            quantity: 1,
            total: Money {
                amount: 3500,
                currency: "usd".into(),
            },
            created_at: "2026-11-22T12:00:00.123Z".into(),
            payment: CardSummary {
                brand: CardBrand::Visa,
                last4: "4242".into(),
            },
            shipping: Address {
                name: format!("Buyer {n}"),
                line1: "1 Loop Rd".into(),
                line2: None,
                city: "Austin".into(),
                region: Some("TX".into()),
                postal_code: "78701".into(),
                country: "US".into(),
            },
        },
        customer,
        partner: "red".into(),
        reservation: hold_id_text(n),
        share_card_with_seller: n.is_multiple_of(2),
        idempotency_key: Some(format!("checkout-{n}")),
        request_fingerprint: None,
        charge_id: format!("ch_{n:016x}"),
    }
}
