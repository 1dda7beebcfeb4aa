use super::*;

#[test]
fn normalize_produces_the_comparison_key() {
    let cases: &[(&str, Option<&str>)] = &[
        (
            "HTTPS://www.Burberry.com/limited/trench/?utm_source=tw&color=red#x",
            Some("burberry.com/limited/trench?color=red"),
        ),
        ("http://burberry.com/a", Some("burberry.com/a")),
        ("https://burberry.com/a", Some("burberry.com/a")),
        ("hTTp://BURBERRY.com/A/b", Some("burberry.com/A/b")),
        ("https://www.burberry.com", Some("burberry.com")),
        ("https://www.burberry.com/", Some("burberry.com")),
        ("https://burberry.com//", Some("burberry.com")),
        ("https://burberry.com/?", Some("burberry.com")),
        ("https://burberry.com/?x=1", Some("burberry.com?x=1")),
        ("https://burberry.com?x=1", Some("burberry.com?x=1")),
        ("https://burberry.com#top", Some("burberry.com")),
        ("https://burberry.com/a#frag?x=1", Some("burberry.com/a")),
        ("https://WWW.shop.example/p", Some("shop.example/p")),
        ("https://wwwx.example/p", Some("wwwx.example/p")),
        ("https://shop.example.:443/p", Some("shop.example/p")),
        ("https://shop.example:443/p", Some("shop.example/p")),
        ("http://shop.example:80/p", Some("shop.example/p")),
        ("http://shop.example:/p", Some("shop.example/p")),
        ("https://shop.example:8443/p", Some("shop.example:8443/p")),
        ("https://user:pw@Shop.example/p", Some("shop.example/p")),
        ("https://[::1]:8080/p", Some("[::1]:8080/p")),
        ("https://[::1]/p", Some("[::1]/p")),
        ("  https://shop.example/p \n", Some("shop.example/p")),
        (
            "https://shop.example/caf\u{e9}/",
            Some("shop.example/caf\u{e9}"),
        ),
    ];
    for (input, want) in cases {
        assert_eq!(normalize(input).as_deref(), *want, "normalize({input:?})");
    }
}

#[test]
fn normalize_drops_tracking_params_and_keeps_the_rest_in_order() {
    let cases: &[(&str, &str)] = &[
        ("https://a.com/p?b=2&a=1", "a.com/p?b=2&a=1"),
        ("https://a.com/p?utm_source=x", "a.com/p"),
        ("https://a.com/p?UTM_Medium=x&k=v", "a.com/p?k=v"),
        ("https://a.com/p?utm_=x&k=v", "a.com/p?k=v"),
        ("https://a.com/p?k=v&utm_campaign", "a.com/p?k=v"),
        (
            "https://a.com/p?fbclid=1&gclid=2&dclid=3&msclkid=4&mc_cid=5&mc_eid=6&igshid=7&ref_src=8&ref_url=9",
            "a.com/p",
        ),
        ("https://a.com/p?FBCLID=1&size=m", "a.com/p?size=m"),
        ("https://a.com/p?s=20&color=red", "a.com/p?s=20&color=red"),
        ("https://a.com/p?&&k=v&&", "a.com/p?k=v"),
        ("https://a.com/p?utmsource=x", "a.com/p?utmsource=x"),
        ("https://a.com/p?ref=home", "a.com/p?ref=home"),
        ("https://a.com/p?k=a=b", "a.com/p?k=a=b"),
    ];
    for (input, want) in cases {
        assert_eq!(
            normalize(input).as_deref(),
            Some(*want),
            "normalize({input:?})"
        );
    }
}

#[test]
fn normalize_refuses_what_is_not_an_http_url() {
    let long = format!("https://a.com/{}", "x".repeat(MAX_URL_LEN));
    let cases: &[&str] = &[
        "",
        "burberry.com/limited",
        "www.burberry.com",
        "ftp://burberry.com/a",
        "mailto:someone@burberry.com",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "https://?q=1",
        "https://www./p",
        "https://user@/p",
        "https://a.com:https/p",
        "https://a.com/p q",
        "https://a.com/p\tq",
        "https:/a.com/p",
        &long,
    ];
    for input in cases {
        assert_eq!(normalize(input), None, "normalize({input:?})");
    }
    let at_limit = format!(
        "https://a.com/{}",
        "x".repeat(MAX_URL_LEN - "https://a.com/".len())
    );
    assert!(normalize(&at_limit).is_some());
}

#[test]
fn normalize_into_reuses_and_clears_the_buffer() {
    let mut buf = String::from("stale");
    assert!(normalize_into("https://a.com/x/", &mut buf));
    assert_eq!(buf, "a.com/x");
    assert!(normalize_into("https://b.com", &mut buf));
    assert_eq!(buf, "b.com");
}

#[test]
fn text_urls_are_found_and_trimmed() {
    let cases: &[(&str, &[&str])] = &[
        ("no links here", &[]),
        (
            "Shop now: https://burberry.com/trench.",
            &["https://burberry.com/trench"],
        ),
        (
            "HTTPS://A.com/x and http://b.com/y!",
            &["HTTPS://A.com/x", "http://b.com/y"],
        ),
        ("(see https://a.com/x)", &["https://a.com/x"]),
        (
            "wiki https://en.wikipedia.org/wiki/Foo_(bar)",
            &["https://en.wikipedia.org/wiki/Foo_(bar)"],
        ),
        (
            "(https://en.wikipedia.org/wiki/Foo_(bar))",
            &["https://en.wikipedia.org/wiki/Foo_(bar)"],
        ),
        ("[https://a.com/x]", &["https://a.com/x"]),
        ("{https://a.com/x}", &["https://a.com/x"]),
        ("'https://a.com/x'", &["https://a.com/x"]),
        ("<a href=\"https://a.com/x\">", &["https://a.com/x"]),
        ("<https://a.com/x>", &["https://a.com/x"]),
        ("really?! https://a.com/x?!...", &["https://a.com/x"]),
        ("https://a.com/x?q=1;", &["https://a.com/x?q=1"]),
        ("https://a.com/x?a=b&c=d", &["https://a.com/x?a=b&c=d"]),
        ("line\nhttps://a.com/x\u{3000}next", &["https://a.com/x"]),
        ("ftp://a.com/x mailto:x@y.z", &[]),
        ("http:// nothing", &[]),
        ("https://.", &[]),
        ("ends with https://", &[]),
        ("a://b https://c.com", &["https://c.com"]),
        ("\u{e9}https://a.com", &["https://a.com"]),
    ];
    for (text, want) in cases {
        let got: Vec<&str> = text_urls(text).collect();
        assert_eq!(&got, want, "text_urls({text:?})");
    }
}

#[test]
fn extract_from_text_skips_urls_already_collected() {
    let mut out = vec![String::from("https://a.com/x")];
    extract_from_text(
        "https://a.com/x then https://b.com/y and https://b.com/y",
        &mut out,
    );
    assert_eq!(out, ["https://a.com/x", "https://b.com/y"]);
}

#[test]
fn trailing_brackets_stay_linear_on_hostile_input() {
    let text = format!("https://a.com/{}", ")".repeat(100_000));
    assert_eq!(text_urls(&text).collect::<Vec<_>>(), ["https://a.com/"]);
}
