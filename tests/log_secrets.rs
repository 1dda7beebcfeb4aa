//! No card number, CVC or token reaches the log, in either `--log-format`: a real server at
//! debug level (buyline at trace) is handed them in every place a client can put them, and
//! its whole output is searched. The JSON run's every line must be a JSON object with the
//! timestamp, level, target and message.

mod common;

use std::time::{Duration, Instant};

use common::{BuylineProcess, Client};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The sandbox's approving card; checked out successfully, so it travels the whole path.
const GOOD_CARD: &str = "4242424242424242";
/// A Visa CVC, sent only where the card is approved; searched for in its quoted forms.
const GOOD_CVC: &str = "739";
/// An Amex test card (4-digit CVC), which the sandbox declines.
const DECLINED_CARD: &str = "378282246310005";
/// An unusual 4-digit CVC, searched for wherever it stands alone between non-digits.
const CVC: &str = "7391";
/// A number failing the Luhn check.
const INVALID_CARD: &str = "4242424242424241";

fn card(number: &str, cvc: &str) -> Value {
    json!({"number": number, "exp_month": 12, "exp_year": 2040, "cvc": cvc, "name": "Ada Lovelace"})
}

fn address() -> Value {
    json!({"name":"Ada Lovelace","line1":"12 St James's Square","city":"London",
           "postal_code":"SW1Y 4JH","country":"GB"})
}

/// The server at `debug,buyline=trace` with `--log-format format`, and its data dir.
fn start(format: &str) -> (BuylineProcess, tempfile::TempDir) {
    let data_dir = tempfile::tempdir().expect("temp dir");
    let server = BuylineProcess::start_with_log_level(
        data_dir.path(),
        &[
            "--listen",
            "127.0.0.1:0",
            "--firehose",
            "none",
            "--log-format",
            format,
        ],
        Some("debug,buyline=trace"),
    );
    (server, data_dir)
}

async fn dev_token(http: &reqwest::Client, base: &str, role: &str, id: &str) -> String {
    let reply: Value = http
        .post(format!("{base}/v1/dev/tokens"))
        .json(&json!({ role: id }))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token reply");
    reply["token"].as_str().expect("a token").to_owned()
}

/// Drives checkouts, good, declined and malformed, over HTTP and the stream, with the cards,
/// CVCs and the customer's token in headers, queries, bodies and frames. Returns the token.
async fn hand_the_server_secrets(server: &BuylineProcess) -> String {
    let base = format!("http://{}", server.addr);
    let http = reqwest::Client::new();
    let admin = dev_token(&http, &base, "admin", "ops").await;
    let token = dev_token(&http, &base, "customer", "ada").await;
    let product = json!({
        "id": "logged", "partner": "burberry", "title": "Logged", "description": "d",
        "image": "https://www.burberry.com/i.jpg", "price": {"amount": 4200, "currency": "gbp"},
        "urls": ["https://www.burberry.com/test/logged"], "stock": 50,
    });
    let put = http
        .put(format!("{base}/v1/admin/products/logged"))
        .bearer_auth(&admin)
        .json(&product)
        .send()
        .await
        .expect("PUT product");
    assert_eq!(put.status(), 200);

    let reserve = || async {
        let reply: Value = http
            .post(format!("{base}/v1/reservations"))
            .bearer_auth(&token)
            .header(
                "Idempotency-Key",
                format!("{GOOD_CARD}-{CVC}-{}", rand_suffix()),
            )
            .json(&json!({"product": "logged", "quantity": 1}))
            .send()
            .await
            .expect("reserve")
            .json()
            .await
            .expect("reservation");
        reply["id"].as_str().expect("a reservation id").to_owned()
    };
    let order = |reservation: &str, payment: Value| json!({"reservation": reservation, "shipping": address(), "payment": payment});
    let post_order = |body: String, query: String| {
        let request = http
            .post(format!("{base}/v1/orders?{query}"))
            .bearer_auth(&token)
            .header("Content-Type", "application/json")
            .header("X-Card-Number", GOOD_CARD)
            .header("X-Cvc", CVC)
            .header("Request-Id", format!("card-{GOOD_CARD}"))
            .header("X-Request-Id", &token)
            .header("Idempotency-Key", format!("{DECLINED_CARD}{CVC}"))
            .body(body);
        async move { request.send().await.expect("POST /v1/orders").status() }
    };
    let query = format!("token={token}&card={GOOD_CARD}&cvc={CVC}");

    // HTTP: declined, invalid, malformed in several ways, then approved.
    let held = reserve().await;
    let declined = order(&held, card(DECLINED_CARD, CVC)).to_string();
    assert_eq!(post_order(declined, query.clone()).await, 402);
    let invalid = order(&held, card(INVALID_CARD, CVC)).to_string();
    assert_eq!(post_order(invalid, query.clone()).await.as_u16() / 100, 4);
    let wrong_cvc_length = order(&held, card(GOOD_CARD, CVC)).to_string();
    assert_eq!(
        post_order(wrong_cvc_length, query.clone()).await.as_u16() / 100,
        4
    );
    let truncated =
        format!(r#"{{"reservation":"{held}","payment":{{"number":"{GOOD_CARD}","cvc":"{CVC}""#);
    assert_eq!(post_order(truncated, query.clone()).await.as_u16() / 100, 4);
    let wrong_types = json!({"reservation": held, "shipping": address(),
        "payment": {"number": GOOD_CARD.parse::<u64>().unwrap(), "cvc": CVC.parse::<u32>().unwrap(),
                    "exp_month": CVC, "exp_year": 2040, "name": token}});
    assert_eq!(
        post_order(wrong_types.to_string(), query.clone())
            .await
            .as_u16()
            / 100,
        4
    );
    let unknown_field = json!({"reservation": held, "shipping": address(),
        "payment": card(GOOD_CARD, GOOD_CVC), token.clone(): CVC});
    assert_eq!(
        post_order(unknown_field.to_string(), query.clone())
            .await
            .as_u16()
            / 100,
        4
    );
    let approved = order(&held, card(GOOD_CARD, GOOD_CVC)).to_string();
    assert_eq!(post_order(approved, query.clone()).await, 201);
    let listed = http
        .get(format!("{base}/v1/me/orders?{query}"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("GET /v1/me/orders");
    assert_eq!(listed.status(), 200);

    // The stream: the token in the query and in the header; checkout frames declined,
    // approved and malformed.
    let mut by_query =
        Client::connect(&format!("ws://{}/v1/stream?token={token}", server.addr)).await;
    let mut stream =
        Client::connect_with_token(&format!("ws://{}/v1/stream", server.addr), &token).await;
    let held = reserve().await;
    stream
        .send(
            json!({"op": "checkout", "id": "declined", "reservation": held,
            "shipping": address(), "payment": card(DECLINED_CARD, CVC)}),
        )
        .await;
    assert_eq!(stream.recv_type("error").await["code"], "card_declined");
    stream
        .send_raw(Message::text(format!(
            r#"{{"op":"checkout","id":"broken","payment":{{"number":"{GOOD_CARD}","cvc":"{CVC}"#
        )))
        .await;
    stream.recv_type("error").await;
    stream
        .send(
            json!({"op": "checkout", "id": "typed", "reservation": held, "shipping": address(),
            "payment": {"number": GOOD_CARD, "cvc": CVC.parse::<u32>().unwrap(), "token": token}}),
        )
        .await;
    stream.recv_type("error").await;
    stream
        .send(json!({"op": GOOD_CARD, "id": CVC, "token": token}))
        .await;
    stream.recv_type("error").await;
    by_query
        .send(json!({"op": "checkout", "id": "ok", "reservation": held,
            "shipping": address(), "payment": card(GOOD_CARD, GOOD_CVC)}))
        .await;
    assert_eq!(by_query.recv_type("order").await["id"], "ok");
    token
}

/// Unique enough for an idempotency key between two reservations of one test.
fn rand_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos())
}

/// Stops `server` and returns everything it logged.
fn stop(mut server: BuylineProcess) -> String {
    server.terminate();
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.child.try_wait().expect("wait").is_none() {
        assert!(Instant::now() < deadline, "the server did not stop");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The reader thread has the last lines once it sees the end of the pipe.
    loop {
        let log = server.log.lock().expect("log").clone();
        if log.contains("buyline stopped") || Instant::now() > deadline {
            return log;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Whether `needle` (digits) stands alone in `haystack`: not inside a longer run of digits.
fn contains_digits_alone(haystack: &str, needle: &str) -> bool {
    haystack.match_indices(needle).any(|(at, _)| {
        let before = haystack[..at].chars().next_back();
        let after = haystack[at + needle.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_digit()) && !after.is_some_and(|c| c.is_ascii_digit())
    })
}

fn assert_no_secrets(log: &str, token: &str) {
    assert!(
        log.contains("buyline serving on"),
        "no log captured:\n{log}"
    );
    for number in [GOOD_CARD, DECLINED_CARD, INVALID_CARD] {
        assert!(!log.contains(number), "card number {number} logged");
    }
    assert!(!contains_digits_alone(log, CVC), "CVC {CVC} logged");
    for quoted in [format!("\"{GOOD_CVC}\""), format!("\\\"{GOOD_CVC}\\\"")] {
        assert!(!log.contains(&quoted), "CVC {quoted} logged");
    }
    assert!(!log.contains(token), "the token logged");
    let signature = token.rsplit('.').next().expect("a JWT");
    assert!(!log.contains(signature), "the token's signature logged");
}

#[tokio::test]
async fn no_card_number_cvc_or_token_reaches_the_json_log() {
    let (server, _data_dir) = start("json");
    let token = hand_the_server_secrets(&server).await;
    let log = stop(server);
    assert_no_secrets(&log, &token);
    for line in log.lines() {
        let event: Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        for key in ["timestamp", "level", "target"] {
            assert!(event[key].is_string(), "no {key} in {line}");
        }
        assert!(
            event["fields"]["message"].is_string(),
            "no message in {line}"
        );
    }
    // Debug level really was on: the requests were logged.
    assert!(log.lines().count() > 20, "{log}");
}

#[tokio::test]
async fn no_card_number_cvc_or_token_reaches_the_text_log() {
    let (server, _data_dir) = start("text");
    let token = hand_the_server_secrets(&server).await;
    let log = stop(server);
    assert_no_secrets(&log, &token);
    assert!(log.lines().any(|line| line.contains("DEBUG")), "{log}");
}
