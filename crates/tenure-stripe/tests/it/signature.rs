//! `Stripe-Signature` against headers made by Stripe's official Node library (stripe 17.7.0,
//! `stripe.webhooks.generateTestHeaderString({payload, secret, timestamp})`).

use tenure_stripe::webhook::{SignatureError, verify};

const PAYLOAD: &str = r#"{"id":"evt_2","object":"event","type":"customer.created","created":1712345678,"data":{"object":{"id":"cus_9","object":"customer","created":1712345678,"name":"Acme","metadata":{}}}}"#;
const SECRET: &str = "whsec_1234567890abcdef";
/// From stripe-node for PAYLOAD, SECRET and timestamp 1712345678.
const HEADER: &str =
    "t=1712345678,v1=ea52e4ee1a58cf941a0b24dc11650e070f92ae39ad3623fca01692efe65ab0b7";

#[test]
fn a_header_from_stripe_s_library_verifies() {
    assert_eq!(verify(Some(HEADER), PAYLOAD.as_bytes(), SECRET, 1712345678 + 10, 300), Ok(()));
    // A second, older vintage of the header (several v1 while a secret rolls, and a v0).
    let rolled = format!("t=1712345678,v1=00ff,v0=abcd,{}", &HEADER[13..]);
    assert_eq!(verify(Some(&rolled), PAYLOAD.as_bytes(), SECRET, 1712345678, 300), Ok(()));
    // Our signer agrees with Stripe's.
    assert_eq!(tenure_stripe::webhook::sign(PAYLOAD.as_bytes(), SECRET, 1712345678), HEADER);
}

#[test]
fn a_wrong_secret_a_changed_body_or_a_stale_timestamp_is_refused() {
    let body = PAYLOAD.as_bytes();
    assert_eq!(
        verify(Some(HEADER), body, "whsec_other", 1712345678, 300),
        Err(SignatureError::NoMatch)
    );
    let changed = PAYLOAD.replace("Acme", "Acmf");
    assert_eq!(
        verify(Some(HEADER), changed.as_bytes(), SECRET, 1712345678, 300),
        Err(SignatureError::NoMatch)
    );
    // Five minutes and one second later: a replay.
    assert_eq!(
        verify(Some(HEADER), body, SECRET, 1712345678 + 301, 300),
        Err(SignatureError::Stale(301))
    );
    assert_eq!(verify(None, body, SECRET, 1712345678, 300), Err(SignatureError::Missing));
    assert_eq!(
        verify(Some("v1=abcd"), body, SECRET, 1712345678, 300),
        Err(SignatureError::Malformed)
    );
    assert_eq!(
        verify(Some("t=1712345678"), body, SECRET, 1712345678, 300),
        Err(SignatureError::Malformed)
    );
}
