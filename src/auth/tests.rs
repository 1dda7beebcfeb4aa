//! Unit tests for `auth`.
use super::*;
use crate::error::ErrorCode;

const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

fn signer() -> TokenSigner {
    TokenSigner::from_secret(SECRET).expect("a 32-byte secret is long enough")
}

fn claims(exp: u64) -> Claims {
    Claims {
        sub: "c_1".into(),
        role: Role::Customer,
        exp,
        iat: Some(exp.saturating_sub(60)),
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn identity(subject: &str, role: Role) -> Identity {
    Identity {
        subject: subject.into(),
        role,
    }
}

#[test]
fn issued_token_verifies_to_its_subject_and_role() {
    let signer = signer();
    let token = signer.issue("p_acme", Role::Partner, Duration::from_secs(3600));
    assert_eq!(
        signer.verify(&token).expect("fresh token verifies"),
        identity("p_acme", Role::Partner)
    );
}

#[test]
fn issued_token_has_the_fixed_hs256_header() {
    let token = signer().issue("c_1", Role::Customer, Duration::from_secs(60));
    let header = token.split('.').next().expect("three segments");
    assert_eq!(
        URL_SAFE_NO_PAD.decode(header).expect("base64url"),
        br#"{"alg":"HS256","typ":"JWT"}"#
    );
}

#[test]
fn short_secret_is_refused() {
    assert!(matches!(
        TokenSigner::from_secret(b"too short"),
        Err(AuthError::SecretTooShort { len: 9 })
    ));
}

#[test]
fn expired_token_is_refused_after_the_leeway() {
    let signer = signer();
    let token = signer.sign(&claims(1_000));
    assert!(signer.verify_at(&token, 1_000 + EXPIRY_LEEWAY_SECS).is_ok());
    assert!(matches!(
        signer.verify_at(&token, 1_001 + EXPIRY_LEEWAY_SECS),
        Err(AuthError::Expired)
    ));
    assert!(matches!(signer.verify(&token), Err(AuthError::Expired)));
}

#[test]
fn token_signed_with_another_secret_is_refused() {
    let forger = TokenSigner::from_secret(b"another secret, also 32 bytes long").expect("long");
    let token = forger.issue("c_1", Role::Customer, Duration::from_secs(60));
    assert!(matches!(
        signer().verify(&token),
        Err(AuthError::BadSignature)
    ));
}

#[test]
fn alg_none_is_refused_even_without_a_signature() {
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = b64(&serde_json::to_vec(&claims(u64::MAX / 2)).expect("json"));
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}"),
    ] {
        assert!(signer().verify(&token).is_err());
    }
    assert!(matches!(
        signer().verify(&format!("{header}.{payload}.")),
        Err(AuthError::UnsupportedAlgorithm)
    ));
}

#[test]
fn other_algorithms_are_refused() {
    let signer = signer();
    let token = signer.issue("c_1", Role::Customer, Duration::from_secs(60));
    let rest = token.split_once('.').expect("segments").1;
    let header = b64(br#"{"alg":"HS512","typ":"JWT"}"#);
    assert!(matches!(
        signer.verify(&format!("{header}.{rest}")),
        Err(AuthError::UnsupportedAlgorithm)
    ));
}

#[test]
fn tampered_payload_is_refused() {
    let signer = signer();
    let token = signer.issue("c_1", Role::Customer, Duration::from_secs(60));
    let [header, _, signature]: [&str; 3] = token
        .split('.')
        .collect::<Vec<_>>()
        .try_into()
        .expect("three segments");
    let mut promoted = claims(unix_now() + 60);
    promoted.role = Role::Admin;
    let payload = b64(&serde_json::to_vec(&promoted).expect("json"));
    assert!(matches!(
        signer.verify(&format!("{header}.{payload}.{signature}")),
        Err(AuthError::BadSignature)
    ));
}

#[test]
fn wrong_segment_count_is_refused() {
    let signer = signer();
    let token = signer.issue("c_1", Role::Customer, Duration::from_secs(60));
    let (two, _) = token.rsplit_once('.').expect("segments");
    for bad in [two.to_owned(), format!("{token}.x"), String::new()] {
        assert!(matches!(signer.verify(&bad), Err(AuthError::NotAJwt)));
    }
}

#[test]
fn garbage_is_refused() {
    let signer = signer();
    assert!(matches!(
        signer.verify("not!base64.at!all.x"),
        Err(AuthError::BadEncoding)
    ));
    let not_json = b64(b"hello");
    assert!(matches!(
        signer.verify(&format!("{not_json}.{not_json}.{not_json}")),
        Err(AuthError::MalformedHeader)
    ));
    assert!(matches!(
        signer.verify(&"a".repeat(MAX_TOKEN_BYTES + 1)),
        Err(AuthError::TooLong)
    ));
}

#[test]
fn signed_but_malformed_claims_are_refused() {
    let signer = signer();
    let mut token = String::from(HEADER_B64);
    token.push('.');
    token.push_str(&b64(br#"{"sub":"c_1","role":"root","exp":99999999999}"#));
    let mut mac = signer.mac.clone();
    mac.update(token.as_bytes());
    let signature = b64(&mac.finalize().into_bytes());
    assert!(matches!(
        signer.verify(&format!("{token}.{signature}")),
        Err(AuthError::MalformedClaims)
    ));
}

#[test]
fn token_errors_become_unauthorized_without_echoing_the_token() {
    let signer = signer();
    let token = signer.sign(&claims(1));
    let err = ApiError::from(signer.verify(&token).expect_err("expired"));
    assert_eq!(err.code, ErrorCode::Unauthorized);
    assert_eq!(err.message, "token expired");
    let forged = format!("{}x", token);
    let err = ApiError::from(signer.verify(&forged).expect_err("forged"));
    assert!(!err.message.contains(&forged[..20]));
}

#[test]
fn secret_file_is_created_with_mode_0600_and_reused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data_dir = dir.path().join("data");
    let first = load_or_create_secret(None, &data_dir).expect("created");
    assert_eq!(first.len(), 2 * MIN_SECRET_BYTES);
    let path = data_dir.join(SECRET_FILE_NAME);
    let mode = std::fs::metadata(&path)
        .expect("exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let second = load_or_create_secret(None, &data_dir).expect("reused");
    assert_eq!(first, second);
}

#[test]
fn explicit_secret_file_is_trimmed_and_must_be_long_enough() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("key");
    std::fs::write(&path, [SECRET, b"\r\n"].concat()).expect("write");
    assert_eq!(
        load_or_create_secret(Some(&path), dir.path()).expect("read"),
        SECRET
    );
    std::fs::write(&path, b"short\n").expect("write");
    assert!(matches!(
        load_or_create_secret(Some(&path), dir.path()),
        Err(AuthError::SecretFileTooShort { .. })
    ));
    let missing = dir.path().join("missing");
    assert!(matches!(
        load_or_create_secret(Some(&missing), dir.path()),
        Err(AuthError::ReadSecret { .. })
    ));
}

#[test]
fn bearer_header_wins_over_query() {
    assert_eq!(
        bearer_token(Some("Bearer abc.def.ghi"), Some("token=zzz")),
        Some("abc.def.ghi")
    );
    assert_eq!(bearer_token(Some("bearer  t"), None), Some("t"));
}

#[test]
fn query_token_is_found_among_other_parameters() {
    assert_eq!(
        bearer_token(None, Some("since=5&token=a.b.c&x=1")),
        Some("a.b.c")
    );
    assert_eq!(bearer_token(None, Some("?token=a.b.c")), Some("a.b.c"));
    assert_eq!(
        bearer_token(Some("Basic dXNlcg=="), Some("token=t")),
        Some("t")
    );
    assert_eq!(bearer_token(None, Some("mytoken=a&token=")), None);
    assert_eq!(bearer_token(Some("Bearer "), None), None);
    assert_eq!(bearer_token(None, None), None);
}

fn code(identity: Option<&Identity>, action: &Action) -> Option<ErrorCode> {
    authorize(identity, action).err().map(|err| err.code)
}

#[test]
fn anyone_may_subscribe() {
    assert_eq!(code(None, &Action::Subscribe), None);
    for role in [Role::Customer, Role::Partner, Role::Admin, Role::Ingest] {
        assert_eq!(code(Some(&identity("x", role)), &Action::Subscribe), None);
    }
}

#[test]
fn buying_needs_a_customer_token() {
    for action in [
        Action::Reserve,
        Action::Checkout,
        Action::ReadOwnOrders,
        Action::ManageOwnWallet,
    ] {
        let err = authorize(None, &action).expect_err("anonymous");
        assert_eq!(err.code, ErrorCode::Unauthorized);
        assert_eq!(err.message, "this needs a customer token");
        assert_eq!(code(Some(&identity("c", Role::Customer)), &action), None);
        for role in [Role::Partner, Role::Admin, Role::Ingest] {
            assert_eq!(
                code(Some(&identity("x", role)), &action),
                Some(ErrorCode::Forbidden)
            );
        }
    }
}

#[test]
fn only_a_customer_connection_has_a_buyer() {
    assert_eq!(buyer(Some(&identity("c", Role::Customer))), Some("c"));
    for role in [Role::Partner, Role::Admin, Role::Ingest] {
        assert_eq!(buyer(Some(&identity("x", role))), None);
    }
    assert_eq!(buyer(None), None);
}

#[test]
fn partner_reads_only_its_own_orders_and_admin_reads_any() {
    let action = Action::ReadPartnerOrders {
        partner: "p_acme".into(),
    };
    assert_eq!(code(None, &action), Some(ErrorCode::Unauthorized));
    assert_eq!(
        code(Some(&identity("p_acme", Role::Partner)), &action),
        None
    );
    assert_eq!(
        code(Some(&identity("p_other", Role::Partner)), &action),
        Some(ErrorCode::Forbidden)
    );
    assert_eq!(code(Some(&identity("root", Role::Admin)), &action), None);
    for role in [Role::Customer, Role::Ingest] {
        assert_eq!(
            code(Some(&identity("p_acme", role)), &action),
            Some(ErrorCode::Forbidden)
        );
    }
}

#[test]
fn catalog_needs_an_admin_token() {
    let err = authorize(None, &Action::ManageCatalog).expect_err("anonymous");
    assert_eq!(err.message, "this needs an admin token");
    assert_eq!(
        code(Some(&identity("a", Role::Admin)), &Action::ManageCatalog),
        None
    );
    for role in [Role::Customer, Role::Partner, Role::Ingest] {
        assert_eq!(
            code(Some(&identity("x", role)), &Action::ManageCatalog),
            Some(ErrorCode::Forbidden)
        );
    }
}

#[test]
fn only_ingest_tokens_ingest_and_ingest_tokens_only_ingest() {
    assert_eq!(code(None, &Action::Ingest), Some(ErrorCode::Unauthorized));
    assert_eq!(
        code(Some(&identity("feed", Role::Ingest)), &Action::Ingest),
        None
    );
    for role in [Role::Customer, Role::Partner, Role::Admin] {
        let err = authorize(Some(&identity("x", role)), &Action::Ingest).expect_err("no");
        assert_eq!(err.code, ErrorCode::Forbidden);
        assert_eq!(err.message, "only ingest tokens ingest");
    }
    let err = authorize(Some(&identity("feed", Role::Ingest)), &Action::Reserve)
        .expect_err("ingest cannot buy");
    assert_eq!(err.message, "ingest tokens only ingest");
}

/// A token for `subject` expiring at `exp`, as [`TokenSigner::issue`] signs them.
fn token_for(signer: &TokenSigner, subject: &str, exp: u64) -> String {
    signer.sign(&Claims {
        sub: subject.into(),
        role: Role::Customer,
        exp,
        iat: None,
    })
}

#[test]
fn a_remembered_token_answers_with_the_identity_a_full_verification_gives() {
    let signer = signer();
    let token = token_for(&signer, "c_7", 1_000);
    let mut last = LastToken::new();
    let first = last.verify_at(&signer, &token, 900).expect("verifies");
    assert!(last.remembers(&token));
    let again = last.verify_at(&signer, &token, 901).expect("remembered");
    assert_eq!(first, again);
    assert_eq!(again, signer.verify_at(&token, 901).expect("verifies"));
}

#[test]
fn a_remembered_token_past_its_exp_is_refused() {
    let signer = signer();
    let token = token_for(&signer, "c_7", 1_000);
    let mut last = LastToken::new();
    last.verify_at(&signer, &token, 1_000).expect("verifies");
    assert!(last.remembers(&token));
    assert!(
        last.verify_at(&signer, &token, 1_000 + EXPIRY_LEEWAY_SECS)
            .is_ok(),
        "still within the leeway"
    );
    assert!(matches!(
        last.verify_at(&signer, &token, 1_001 + EXPIRY_LEEWAY_SECS),
        Err(AuthError::Expired)
    ));
    assert!(!last.remembers(&token), "an expired token is forgotten");
    assert!(matches!(
        last.verify_at(&signer, &token, 1_001 + EXPIRY_LEEWAY_SECS),
        Err(AuthError::Expired)
    ));
}

#[test]
fn a_tampered_token_is_never_answered_from_the_remembered_one() {
    let signer = signer();
    let token = token_for(&signer, "c_7", 2_000);
    let mut last = LastToken::new();
    last.verify_at(&signer, &token, 1_000).expect("verifies");
    // Every byte changed in turn, to another character of the token's alphabet: the same
    // length, so only the comparison of the bytes tells it from the remembered token.
    for at in 0..token.len() {
        let mut tampered = token.clone().into_bytes();
        tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(tampered).expect("ascii");
        assert!(
            last.verify_at(&signer, &tampered, 1_000).is_err(),
            "byte {at} changed still verified"
        );
    }
    // Another subject's claims under the remembered token's header and signature.
    let (_, signature) = token.rsplit_once('.').expect("three parts");
    let other_claims = b64(&serde_json::to_vec(&claims(2_000)).expect("json"));
    let forged = format!("{HEADER_B64}.{other_claims}.{signature}");
    assert!(matches!(
        last.verify_at(&signer, &forged, 1_000),
        Err(AuthError::BadSignature)
    ));
    assert!(last.remembers(&token), "a refused token replaces nothing");
    assert!(last.verify_at(&signer, &token, 1_000).is_ok());
}

#[test]
fn one_connection_remembers_one_token_however_many_it_presents() {
    let signer = signer();
    let mut last = LastToken::new();
    let tokens: Vec<String> = (0..1_000)
        .map(|n| token_for(&signer, &format!("c_{n}"), 2_000))
        .collect();
    for (n, token) in tokens.iter().enumerate() {
        let identity = last.verify_at(&signer, token, 1_000).expect("verifies");
        assert_eq!(identity.subject, format!("c_{n}"));
    }
    let remembered: Vec<usize> = (0..tokens.len())
        .filter(|&n| last.remembers(&tokens[n]))
        .collect();
    assert_eq!(remembered, [tokens.len() - 1]);
}

#[test]
fn a_token_longer_than_the_limit_verifies_but_is_not_remembered() {
    let signer = signer();
    let long = token_for(
        &signer,
        &"c".repeat(last_token::MAX_REMEMBERED_TOKEN_BYTES),
        2_000,
    );
    let short = token_for(&signer, "c_1", 2_000);
    let mut last = LastToken::new();
    last.verify_at(&signer, &short, 1_000).expect("verifies");
    assert!(last.verify_at(&signer, &long, 1_000).is_ok());
    assert!(!last.remembers(&long));
    assert!(!last.remembers(&short), "the longer token took its place");
}
