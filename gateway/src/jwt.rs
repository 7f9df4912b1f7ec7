//! JWT authentication: `Authorization: Bearer <JWT>` checked against the configured issuer and
//! audience with an explicit algorithm allow-list (never `none`; shared-secret and public-key
//! algorithms cannot be mixed, so an HS token can never be verified with an RSA public key used as a
//! secret). Keys come from a shared secret, PEM files, a JWKS file or a JWKS URL (cached, refreshed).
//! Claims map the token to a subject (its usage and limits are tracked as `jwt:<sub>`), a team (whose
//! limits and budgets apply) and optionally the models it may use.

use std::{
    collections::BTreeSet,
    sync::{Arc, RwLock},
    time::Duration,
};

use jsonwebtoken::{
    jwk::{AlgorithmParameters, JwkSet},
    Algorithm, DecodingKey, Validation,
};
use serde::Deserialize;
use serde_json::{Map, Value};
use tollgate_policy::{keys::Limits, KeyRecord, Keyring, Principal};

use crate::{config::Secret, error::ApiError};

/// `[auth.jwt]`
#[derive(Debug, Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    pub issuer: String,
    pub audience: String,
    pub algorithms: Vec<Algorithm>,
    /// Variable holding the HMAC secret (HS256/384/512 only).
    #[serde(default)]
    pub hs_secret_env: Option<String>,
    #[serde(default)]
    pub public_key_files: Vec<String>,
    #[serde(default)]
    pub jwks_file: Option<String>,
    #[serde(default)]
    pub jwks_url: Option<String>,
    #[serde(default = "default_refresh")]
    pub jwks_refresh_secs: u64,
    #[serde(default = "default_sub")]
    pub subject_claim: String,
    #[serde(default)]
    pub team_claim: Option<String>,
    /// A claim holding the model globs the token may use; without it, every model.
    #[serde(default)]
    pub models_claim: Option<String>,
    /// Limits applied to each subject.
    #[serde(default)]
    pub limits: Limits,
    #[serde(default = "default_leeway")]
    pub leeway_secs: u64,
}

fn default_refresh() -> u64 {
    300
}
fn default_sub() -> String {
    "sub".into()
}
fn default_leeway() -> u64 {
    30
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Family {
    Hmac,
    Rsa,
    Ec,
    Ed,
}

fn family(alg: Algorithm) -> Option<Family> {
    use Algorithm::*;
    Some(match alg {
        HS256 | HS384 | HS512 => Family::Hmac,
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => Family::Rsa,
        ES256 | ES384 => Family::Ec,
        EdDSA => Family::Ed,
        _ => return None,
    })
}

struct VerifyKey {
    kid: Option<String>,
    family: Family,
    key: DecodingKey,
}

impl JwtConfig {
    /// Problems by field path, for config validation.
    pub fn problems(&self, getenv: &dyn Fn(&str) -> Option<String>) -> Vec<String> {
        let mut out = Vec::new();
        let families: BTreeSet<Family> = self.algorithms.iter().filter_map(|a| family(*a)).collect();
        if self.algorithms.iter().any(|a| family(*a).is_none()) {
            out.push("auth.jwt.algorithms: contains an unsupported algorithm".into());
        }
        if self.algorithms.is_empty() {
            out.push("auth.jwt.algorithms: list at least one algorithm".into());
        }
        if families.contains(&Family::Hmac) && families.len() > 1 {
            out.push(
                "auth.jwt.algorithms: shared-secret (HS*) and public-key algorithms cannot be mixed".into(),
            );
        }
        if families.contains(&Family::Hmac)
            && self
                .hs_secret_env
                .as_deref()
                .and_then(getenv)
                .is_none_or(|s| s.len() < 32)
        {
            out.push(
                "auth.jwt.hs_secret_env: must name a variable holding a secret of at least 32 bytes".into(),
            );
        }
        let asymmetric = families.iter().any(|f| *f != Family::Hmac);
        if asymmetric
            && self.public_key_files.is_empty()
            && self.jwks_file.is_none()
            && self.jwks_url.is_none()
        {
            out.push("auth.jwt: public-key algorithms need public_key_files, jwks_file or jwks_url".into());
        }
        if self.issuer.is_empty() || self.audience.is_empty() {
            out.push("auth.jwt.issuer/audience: must not be empty".into());
        }
        out
    }
}

pub struct JwtAuth {
    cfg: JwtConfig,
    secret: Option<Secret>,
    keys: RwLock<Vec<Arc<VerifyKey>>>,
    http: reqwest::Client,
}

fn pem_key(pem: &[u8], fam: Family) -> Option<DecodingKey> {
    match fam {
        Family::Rsa => DecodingKey::from_rsa_pem(pem).ok(),
        Family::Ec => DecodingKey::from_ec_pem(pem).ok(),
        Family::Ed => DecodingKey::from_ed_pem(pem).ok(),
        Family::Hmac => None,
    }
}

fn jwks_keys(set: &JwkSet) -> Vec<Arc<VerifyKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let fam = match &jwk.algorithm {
                AlgorithmParameters::RSA(_) => Family::Rsa,
                AlgorithmParameters::EllipticCurve(_) => Family::Ec,
                AlgorithmParameters::OctetKeyPair(_) => Family::Ed,
                // Symmetric keys never come from a JWKS here: that would reopen alg confusion.
                _ => return None,
            };
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Arc::new(VerifyKey {
                kid: jwk.common.key_id.clone(),
                family: fam,
                key,
            }))
        })
        .collect()
}

impl JwtAuth {
    pub async fn new(cfg: JwtConfig, secret: Option<Secret>) -> anyhow::Result<Arc<JwtAuth>> {
        let auth = Arc::new(JwtAuth {
            cfg,
            secret,
            keys: RwLock::new(Vec::new()),
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()?,
        });
        auth.reload().await?;
        Ok(auth)
    }

    /// (Re)loads PEM files, the JWKS file and the JWKS URL; keeps the old keys if any source fails.
    pub async fn reload(&self) -> anyhow::Result<()> {
        let families: BTreeSet<Family> = self.cfg.algorithms.iter().filter_map(|a| family(*a)).collect();
        let mut keys = Vec::new();
        for path in &self.cfg.public_key_files {
            let pem =
                std::fs::read(path).map_err(|e| anyhow::anyhow!("auth.jwt.public_key_files: {path}: {e}"))?;
            let found = families.iter().find_map(|f| pem_key(&pem, *f).map(|k| (*f, k)));
            let (fam, key) = found.ok_or_else(|| {
                anyhow::anyhow!(
                    "auth.jwt.public_key_files: {path}: not a public key for the allowed algorithms"
                )
            })?;
            keys.push(Arc::new(VerifyKey {
                kid: None,
                family: fam,
                key,
            }));
        }
        if let Some(path) = &self.cfg.jwks_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| anyhow::anyhow!("auth.jwt.jwks_file: {path}: {e}"))?;
            let set: JwkSet =
                serde_json::from_str(&text).map_err(|e| anyhow::anyhow!("auth.jwt.jwks_file: {e}"))?;
            keys.extend(jwks_keys(&set));
        }
        if let Some(url) = &self.cfg.jwks_url {
            let set: JwkSet = self
                .http
                .get(url)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            keys.extend(jwks_keys(&set));
        }
        if let Ok(mut g) = self.keys.write() {
            *g = keys;
        }
        Ok(())
    }

    pub fn spawn_refresh(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if self.cfg.jwks_url.is_none() && self.cfg.jwks_file.is_none() {
            return None;
        }
        let this = Arc::clone(self);
        Some(tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(this.cfg.jwks_refresh_secs.max(5))).await;
                if let Err(e) = this.reload().await {
                    tracing::warn!(error = %e, "JWKS refresh failed; keeping the previous keys");
                }
            }
        }))
    }

    /// Three base64url segments and not a Tollgate key.
    pub fn looks_like_jwt(token: &str) -> bool {
        !token.starts_with(tollgate_policy::keys::KEY_PREFIX) && token.split('.').count() == 3
    }

    fn reject(why: &str) -> ApiError {
        tracing::info!(reason = why, "JWT rejected");
        ApiError::Unauthorized("Invalid bearer token.".into())
    }

    pub fn authenticate(&self, token: &str, keyring: &Keyring) -> Result<Principal, ApiError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| Self::reject("malformed header"))?;
        if !self.cfg.algorithms.contains(&header.alg) {
            return Err(Self::reject("algorithm not allowed"));
        }
        let fam = family(header.alg).ok_or_else(|| Self::reject("unsupported algorithm"))?;
        let mut v = Validation::new(header.alg);
        v.set_issuer(&[&self.cfg.issuer]);
        v.set_audience(&[&self.cfg.audience]);
        v.set_required_spec_claims(&["exp", "iss", "aud"]);
        v.leeway = self.cfg.leeway_secs;
        let claims: Map<String, Value> = if fam == Family::Hmac {
            let secret = self.secret.as_ref().ok_or_else(|| Self::reject("no secret"))?;
            let key = DecodingKey::from_secret(secret.expose().as_bytes());
            jsonwebtoken::decode(token, &key, &v)
                .map_err(|e| Self::reject(&e.to_string()))?
                .claims
        } else {
            let keys: Vec<Arc<VerifyKey>> = self.keys.read().map(|k| k.clone()).unwrap_or_default();
            let candidates = keys.iter().filter(|k| {
                k.family == fam && (header.kid.is_none() || k.kid.is_none() || k.kid == header.kid)
            });
            let mut result = Err(Self::reject("no matching key"));
            for k in candidates {
                match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
                    Ok(data) => {
                        result = Ok(data.claims);
                        break;
                    }
                    Err(e) => result = Err(Self::reject(&e.to_string())),
                }
            }
            result?
        };
        self.principal(&claims, keyring)
    }

    fn principal(&self, claims: &Map<String, Value>, keyring: &Keyring) -> Result<Principal, ApiError> {
        let sub = claims
            .get(&self.cfg.subject_claim)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .ok_or_else(|| Self::reject("missing subject claim"))?;
        let team_id = self
            .cfg
            .team_claim
            .as_ref()
            .and_then(|c| claims.get(c))
            .and_then(Value::as_str);
        let team = match team_id {
            Some(t) => Some(keyring.team(t).ok_or_else(|| ApiError::Forbidden {
                message: format!("The token's team `{t}` is not configured."),
                code: "unknown_team",
            })?),
            None => None,
        };
        let models = match self.cfg.models_claim.as_ref().and_then(|c| claims.get(c)) {
            Some(Value::Array(list)) => list
                .iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect(),
            Some(Value::String(s)) => s
                .split([' ', ','])
                .filter(|m| !m.is_empty())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        };
        let key = KeyRecord {
            id: format!("jwt:{sub}"),
            name: sub.to_string(),
            models,
            team: team.as_ref().map(|t| t.id.clone()),
            limits: self.cfg.limits,
            budgets: Default::default(),
            metadata: Map::new(),
            expires_at: None,
            body_retention: None,
            created_at_ms: 0,
            revoked: false,
            key_hash: String::new(),
        };
        Ok(Principal {
            key: Arc::new(key),
            team,
        })
    }
}
