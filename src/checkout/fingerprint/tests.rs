use serde_json::{Value, json};

use super::*;

fn request(body: Value) -> CheckoutRequest {
    CheckoutRequest::from_json(&body, &[]).expect("a valid request")
}

fn base() -> Value {
    json!({
        "reservation": "res_0000000100000000",
        "shipping": {"name":"Ada","line1":"1 Loop Rd","city":"Austin","region":"TX",
                     "postal_code":"78701","country":"US"},
        "payment": {"number":"4242424242424242","exp_month":12,"exp_year":2040,"cvc":"123","name":"Ada"},
        "save": false,
        "share_card_with_seller": false,
        "idempotency_key": "k1",
    })
}

fn key() -> FingerprintKey {
    FingerprintKey::derive(&[7; 32])
}

fn of(body: Value) -> RequestFingerprint {
    key().fingerprint("ada", &request(body))
}

#[test]
fn the_same_request_has_the_same_fingerprint_whatever_its_spelling() {
    let mut retyped = base();
    // Separators in the number, the country's case, a different CVC, another key: the same
    // order (the CVC is never kept; the key is what the fingerprint is looked up by).
    retyped["payment"]["number"] = "4242 4242-4242 4242".into();
    retyped["payment"]["cvc"] = "999".into();
    retyped["shipping"]["country"] = "us".into();
    retyped["idempotency_key"] = "k2".into();
    assert_eq!(of(base()), of(retyped));
}

/// One edit of a request body.
type Change = fn(&mut Value);

#[test]
fn each_part_of_the_order_changes_the_fingerprint() {
    let changes: [(&str, Change); 14] = [
        ("reservation", |b| {
            b["reservation"] = "res_0000000100000001".into()
        }),
        ("card number", |b| {
            b["payment"]["number"] = "5555555555554444".into()
        }),
        ("expiry month", |b| b["payment"]["exp_month"] = 11.into()),
        ("expiry year", |b| b["payment"]["exp_year"] = 2041.into()),
        ("cardholder", |b| b["payment"]["name"] = "Ada L".into()),
        ("saved card", |b| b["payment"] = json!({"saved":"pm_1"})),
        ("address name", |b| b["shipping"]["name"] = "Bob".into()),
        ("address line1", |b| {
            b["shipping"]["line1"] = "2 Loop Rd".into()
        }),
        ("address line2", |b| b["shipping"]["line2"] = "".into()),
        ("address region", |b| b["shipping"]["region"] = Value::Null),
        ("address postcode", |b| {
            b["shipping"]["postal_code"] = "78702".into()
        }),
        ("saved address", |b| {
            b["shipping"] = json!({"saved":"addr_1"})
        }),
        ("save", |b| b["save"] = true.into()),
        ("share", |b| b["share_card_with_seller"] = true.into()),
    ];
    let first = of(base());
    let mut seen = vec![first];
    for (what, change) in changes {
        let mut body = base();
        change(&mut body);
        let changed = of(body);
        assert!(
            !seen.contains(&changed),
            "{what} did not change the fingerprint"
        );
        seen.push(changed);
    }
    assert_ne!(
        key().fingerprint("bob", &request(base())),
        first,
        "customer"
    );
}

#[test]
fn the_fingerprint_is_keyed_by_the_server_secret() {
    let other = FingerprintKey::derive(&[8; 32]);
    assert_ne!(other.fingerprint("ada", &request(base())), of(base()));
    // The same secret (a restart) gives the same fingerprint.
    assert_eq!(
        FingerprintKey::derive(&[7; 32]).fingerprint("ada", &request(base())),
        of(base())
    );
}

#[test]
fn a_fingerprint_is_written_as_hex_and_read_back_strictly() {
    let fingerprint = of(base());
    let json = serde_json::to_string(&fingerprint).unwrap();
    assert_eq!(json.len(), 2 * FINGERPRINT_LEN + 2);
    assert!(!json.contains("4242"), "{json}");
    assert_eq!(
        serde_json::from_str::<RequestFingerprint>(&json).unwrap(),
        fingerprint
    );
    for bad in [
        "\"\"",
        "\"abc\"",
        &json.to_uppercase(),
        &json.replacen('"', "\"+", 1),
    ] {
        assert!(
            serde_json::from_str::<RequestFingerprint>(bad).is_err(),
            "{bad}"
        );
    }
    assert!(!format!("{:?}", key()).contains('7'));
}
