//! JWT authentication: HS256 with a shared secret, RS256 with keys from a JWKS URL, claims mapped to
//! a subject, a team and models; and the classic attacks (alg none, HS/RS confusion, wrong issuer or
//! audience, expiry) refused.

#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{json, Value};
use tollgate_tests::{
    env::skip,
    fake::{serve, FakeProvider},
    fake_vertex::TestKeys,
    gateway::{check_config, standard_config, temp_dir, Gateway, PROVIDER_KEY},
};

const SECRET: &str = "a-test-secret-that-is-long-enough-1234";

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "iss": "https://idp.test", "aud": "tollgate", "exp": now() + 600})
}

fn b64url(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16)
            | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8)
            | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..=chunk.len() {
            out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

/// `claims` signed with HS256 and `key`.
fn hs256(claims: &Value, key: &EncodingKey) -> String {
    encode(&Header::new(Algorithm::HS256), claims, key).unwrap()
}

async fn call(gw: &Gateway, token: &str, model: &str) -> u16 {
    gw.chat(
        token,
        json!({"model": model, "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await
    .status()
    .as_u16()
}

#[tokio::test]
async fn hs256_tokens_are_verified_and_attacks_refused() {
    let fake = FakeProvider::start().await;
    let jwt = "[auth.jwt]\nissuer = \"https://idp.test\"\naudience = \"tollgate\"\nalgorithms = [\"HS256\"]\nhs_secret_env = \"TG_JWT_SECRET\"\n";
    let gw = Gateway::start(
        &format!("{}{jwt}", standard_config(&fake.base_url())),
        &[("FAKE_PROVIDER_KEY", PROVIDER_KEY), ("TG_JWT_SECRET", SECRET)],
    )
    .await;
    let key = EncodingKey::from_secret(SECRET.as_bytes());
    let good = hs256(&claims("alice"), &key);
    assert_eq!(call(&gw, &good, "echo").await, 200);
    let e = &gw.wait_events(1).await[0];
    assert_eq!(e["key_id"], "jwt:alice");

    let mut c = claims("alice");
    c["iss"] = json!("https://evil.test");
    assert_eq!(call(&gw, &hs256(&c, &key), "echo").await, 401);
    let mut c = claims("alice");
    c["aud"] = json!("someone-else");
    assert_eq!(call(&gw, &hs256(&c, &key), "echo").await, 401);
    let mut c = claims("alice");
    c["exp"] = json!(now() - 3600);
    assert_eq!(call(&gw, &hs256(&c, &key), "echo").await, 401);
    let other = EncodingKey::from_secret(b"another-secret-that-is-long-enough-000");
    assert_eq!(call(&gw, &hs256(&claims("alice"), &other), "echo").await, 401);
    // alg none: a valid-looking token with no signature.
    let none = format!(
        "{}.{}.",
        b64url(br#"{"alg":"none","typ":"JWT"}"#),
        b64url(claims("alice").to_string().as_bytes())
    );
    assert_eq!(call(&gw, &none, "echo").await, 401);
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        format!(
            "{}.{}.{}",
            parts[0],
            b64url(claims("mallory").to_string().as_bytes()),
            parts[2]
        )
    };
    assert_eq!(call(&gw, &tampered, "echo").await, 401);
    assert!(!gw.logs().contains(SECRET));
}

#[tokio::test]
async fn rs256_keys_from_a_jwks_url_map_claims_to_team_and_models() {
    let dir = temp_dir("jwt");
    let Some(keys) = TestKeys::generate(&dir) else {
        return skip("openssl is needed to generate the test RSA key");
    };
    let jwks = json!({"keys": [{"kty": "RSA", "kid": "k1", "alg": "RS256", "use": "sig", "n": b64url(&keys.modulus), "e": "AQAB"}]});

    // The identity provider's JWKS endpoint.
    let app = axum::Router::new().route(
        "/jwks.json",
        axum::routing::get(move || {
            let j = jwks.clone();
            async move { axum::Json(j) }
        }),
    );
    let idp = serve(app).await;

    let fake = FakeProvider::start().await;
    let jwt = format!(
        "[auth.jwt]\nissuer = \"https://idp.test\"\naudience = \"tollgate\"\nalgorithms = [\"RS256\"]\n\
         jwks_url = \"http://{}/jwks.json\"\nteam_claim = \"org\"\nmodels_claim = \"models\"\n",
        idp.addr
    );
    let gw = Gateway::start_standard(&fake.base_url(), &jwt).await;
    gw.admin(
        Method::POST,
        "/admin/teams",
        Some(json!({"id": "acme", "limits": {"rpm": 2}})),
        201,
    )
    .await;
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;

    let signing = EncodingKey::from_rsa_pem(keys.private_pem.as_bytes()).unwrap();
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some("k1".into());
    let mut c = claims("bob");
    c["org"] = json!("acme");
    c["models"] = json!(["echo"]);
    let token = encode(&header, &c, &signing).unwrap();
    assert_eq!(call(&gw, &token, "echo").await, 200);
    assert_eq!(call(&gw, &token, "gpt-test").await, 403, "models claim restricts");
    assert_eq!(call(&gw, &token, "echo").await, 200);
    assert_eq!(call(&gw, &token, "echo").await, 429, "the team's 2 rpm apply");

    let mut c = claims("carol");
    c["org"] = json!("no-such-team");
    assert_eq!(
        call(&gw, &encode(&header, &c, &signing).unwrap(), "echo").await,
        403
    );
    // HS/RS confusion: an HS256 token "signed" with the public key as the secret.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims("eve"),
        &EncodingKey::from_secret(keys.public_pem.as_bytes()),
    )
    .unwrap();
    assert_eq!(call(&gw, &confused, "echo").await, 401);
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn config_refuses_mixed_algorithms_and_short_secrets() {
    let (code, err) = check_config("[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"HS256\", \"RS256\"]\nhs_secret_env = \"NOPE_UNSET\"\n");
    assert_eq!(code, Some(1));
    assert!(
        err.contains("cannot be mixed") && err.contains("hs_secret_env"),
        "{err}"
    );
    let (code, _) = check_config("[auth.jwt]\nissuer = \"i\"\naudience = \"a\"\nalgorithms = [\"none\"]\n");
    assert_eq!(code, Some(1), "alg none must not parse");
}
