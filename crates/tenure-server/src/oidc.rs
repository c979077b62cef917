//! Single sign-on with OpenID Connect: the authorisation code flow with PKCE against the
//! company's identity provider (Okta, Entra ID, Google, Keycloak, ...), through the
//! `openidconnect` crate (discovery, the ID token's signature, issuer, audience, expiry
//! and nonce). The person must already be a Tenure user: the provider proves who they are
//! (a verified email), Tenure's users file says what they may see. Requests to the
//! provider go through the notifiers' HTTP client, with a timeout and a size cap.
//!
//! A sign-in is pending between the redirect to the provider and its answer: its state,
//! nonce and PKCE verifier are kept here (in memory, ten minutes, bounded), and the state
//! is also set in a cookie, so that an answer is only taken by the browser that asked.

use crate::notify::{self, DeliveryError};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient, CoreProviderMetadata};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointMaybeSet, EndpointNotSet,
    EndpointSet, HttpRequest, HttpResponse, IssuerUrl, Nonce, PkceCodeChallenge, PkceCodeVerifier,
    RedirectUrl, Scope, TokenResponse,
};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a sign-in may take at the provider.
const PENDING_TTL: Duration = Duration::from_secs(600);
/// Sign-ins pending at once (older ones are dropped first).
const MAX_PENDING: usize = 10_000;
/// How long the provider's discovery document is trusted before it is read again.
const METADATA_TTL: Duration = Duration::from_secs(3600);
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BODY: usize = 1 << 20;

/// The `[oidc]` section. `Debug` hides the client secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OidcConfig {
    /// The provider's issuer URL (discovery at `ISSUER/.well-known/openid-configuration`).
    pub issuer: String,
    pub client_id: String,
    /// The client secret; else the `TENURE_OIDC_CLIENT_SECRET` environment variable; a
    /// public client has none.
    pub client_secret: Option<String>,
    /// Where the provider sends the browser back [`public_url` + `/login/oidc/callback`].
    pub redirect_url: Option<String>,
    /// The button's text on the login page [Sign in with single sign-on].
    pub label: Option<String>,
    /// Scopes asked besides `openid` [email, profile].
    pub scopes: Option<Vec<String>>,
}

impl fmt::Debug for OidcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OidcConfig")
            .field("issuer", &self.issuer)
            .field("client_id", &self.client_id)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "<redacted>"))
            .field("redirect_url", &self.redirect_url)
            .field("label", &self.label)
            .field("scopes", &self.scopes)
            .finish()
    }
}

/// Why a sign-in did not happen; the message is shown on the login page.
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    #[error("single sign-on is misconfigured: {0}")]
    Config(String),
    #[error("the identity provider could not be reached or answered wrongly: {0}")]
    Provider(String),
    #[error("{0}")]
    Refused(String),
}

/// The client as the provider's metadata sets it up: an authorisation URL, maybe a token
/// and a userinfo URL.
type Client = CoreClient<
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

struct Pending {
    nonce: String,
    verifier: String,
    at: Instant,
}

/// The relying party: configuration, the provider's metadata and pending sign-ins.
pub struct Oidc {
    cfg: OidcConfig,
    secret: Option<String>,
    redirect: RedirectUrl,
    metadata: tokio::sync::Mutex<Option<(Instant, CoreProviderMetadata)>>,
    pending: Mutex<HashMap<String, Pending>>,
}

/// One request to the provider.
async fn http(req: HttpRequest) -> Result<HttpResponse, DeliveryError> {
    let (parts, body) = req.into_parts();
    let headers: Vec<(String, String)> = parts
        .headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_string(), v.to_str().ok()?.to_string())))
        .collect();
    let got =
        notify::fetch(parts.method, &parts.uri.to_string(), &headers, body, HTTP_TIMEOUT, MAX_BODY)
            .await?;
    let mut r = openidconnect::http::Response::builder().status(got.status);
    for (k, v) in &got.headers {
        r = r.header(k.as_str(), v.as_str());
    }
    r.body(got.body).map_err(|e| DeliveryError::BadResponse(e.to_string()))
}

/// Equal, compared through their hashes (no early exit on the first differing byte).
fn same(a: &str, b: &str) -> bool {
    Sha256::digest(a.as_bytes()) == Sha256::digest(b.as_bytes())
}

impl Oidc {
    /// Checks the configuration; `public_url` gives the default redirect URL.
    pub fn new(cfg: OidcConfig, public_url: Option<&str>) -> Result<Oidc, OidcError> {
        let bad = |m: String| OidcError::Config(m);
        IssuerUrl::new(cfg.issuer.clone()).map_err(|e| bad(format!("issuer: {e}")))?;
        if !cfg.issuer.starts_with("https://") && !cfg.issuer.starts_with("http://") {
            return Err(bad("issuer: an http(s) URL".into()));
        }
        if cfg.client_id.trim().is_empty() {
            return Err(bad("client_id is empty".into()));
        }
        let redirect = match (&cfg.redirect_url, public_url) {
            (Some(r), _) => r.clone(),
            (None, Some(p)) => format!("{}/login/oidc/callback", p.trim_end_matches('/')),
            (None, None) => {
                return Err(bad("needs redirect_url, or public_url in [service]".into()));
            }
        };
        let redirect = RedirectUrl::new(redirect).map_err(|e| bad(format!("redirect_url: {e}")))?;
        let secret = cfg
            .client_secret
            .clone()
            .or_else(|| std::env::var("TENURE_OIDC_CLIENT_SECRET").ok())
            .filter(|s| !s.is_empty());
        Ok(Oidc {
            cfg,
            secret,
            redirect,
            metadata: tokio::sync::Mutex::new(None),
            pending: Mutex::new(HashMap::new()),
        })
    }

    /// The login page's button text.
    pub fn label(&self) -> &str {
        self.cfg.label.as_deref().unwrap_or("Sign in with single sign-on")
    }

    async fn metadata(&self) -> Result<CoreProviderMetadata, OidcError> {
        let mut m = self.metadata.lock().await;
        if let Some((at, meta)) = m.as_ref()
            && at.elapsed() < METADATA_TTL
        {
            return Ok(meta.clone());
        }
        let issuer = IssuerUrl::new(self.cfg.issuer.clone())
            .map_err(|e| OidcError::Config(format!("issuer: {e}")))?;
        let meta = CoreProviderMetadata::discover_async(issuer, &http)
            .await
            .map_err(|e| OidcError::Provider(format!("discovery: {}", chain(&e))))?;
        *m = Some((Instant::now(), meta.clone()));
        Ok(meta)
    }

    /// The client for the provider's current metadata, with the redirect URL.
    async fn client(&self) -> Result<Client, OidcError> {
        let meta = self.metadata().await?;
        Ok(CoreClient::from_provider_metadata(
            meta,
            ClientId::new(self.cfg.client_id.clone()),
            self.secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(self.redirect.clone()))
    }

    /// The sign-in's start: the provider's URL to send the browser to, and the state to
    /// set in its cookie. `login_hint` pre-fills the provider's login.
    pub async fn begin(&self, login_hint: Option<&str>) -> Result<(String, String), OidcError> {
        let client = self.client().await?;
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let mut req = client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                Nonce::new_random,
            )
            .set_pkce_challenge(challenge);
        let scopes =
            self.cfg.scopes.clone().unwrap_or_else(|| vec!["email".into(), "profile".into()]);
        for s in scopes {
            req = req.add_scope(Scope::new(s));
        }
        if let Some(h) = login_hint.filter(|h| !h.is_empty() && h.len() <= 254) {
            req = req.add_extra_param("login_hint", h.to_string());
        }
        let (url, state, nonce) = req.url();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.retain(|_, p| p.at.elapsed() < PENDING_TTL);
        if pending.len() >= MAX_PENDING {
            // The oldest give way: a flood of starts cannot grow memory without bound.
            let mut ages: Vec<(Instant, String)> =
                pending.iter().map(|(k, p)| (p.at, k.clone())).collect();
            ages.sort();
            for (_, k) in ages.into_iter().take(MAX_PENDING / 10) {
                pending.remove(&k);
            }
        }
        pending.insert(
            state.secret().clone(),
            Pending {
                nonce: nonce.secret().clone(),
                verifier: verifier.secret().clone(),
                at: Instant::now(),
            },
        );
        Ok((url.to_string(), state.secret().clone()))
    }

    /// The provider's answer: the code exchanged (with the PKCE verifier), the ID token
    /// verified (signature, issuer, audience, expiry, nonce). Returns the verified email,
    /// lower-case. `cookie` is the state this browser was given.
    pub async fn finish(
        &self,
        state: &str,
        cookie: Option<&str>,
        code: &str,
    ) -> Result<String, OidcError> {
        let refused = |m: &str| OidcError::Refused(m.to_string());
        if !cookie.is_some_and(|c| same(c, state)) {
            return Err(refused(
                "This sign-in was not started in this browser (or took too long): start again.",
            ));
        }
        let p = self
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(state)
            .filter(|p| p.at.elapsed() < PENDING_TTL)
            .ok_or_else(|| refused("This sign-in has expired or was used already: start again."))?;
        let client = self.client().await?;
        let token = client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| OidcError::Config(e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(p.verifier))
            .request_async(&http)
            .await
            .map_err(|e| OidcError::Provider(format!("token: {}", chain(&e))))?;
        let id_token = token.id_token().ok_or_else(|| OidcError::Provider("no ID token".into()))?;
        let claims =
            id_token.claims(&client.id_token_verifier(), &Nonce::new(p.nonce)).map_err(|e| {
                refused(&format!("The identity provider's answer failed a check: {e}."))
            })?;
        let email = claims
            .email()
            .map(|e| e.as_str().trim().to_lowercase())
            .filter(|e| !e.is_empty())
            .ok_or_else(|| {
                refused("The identity provider gave no email (ask for the email scope).")
            })?;
        if claims.email_verified() == Some(false) {
            return Err(refused("The identity provider has not verified this email."));
        }
        Ok(email)
    }
}

/// An error and its sources, in one line.
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}
