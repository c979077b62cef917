// A local OpenID provider for the single sign-on test, on the npm package oidc-provider:
// one confidential client (tenure / tenure-secret) whose redirect URL is the second
// argument, accounts whose id is their email, and an interaction that signs in the
// account named by the request's login_hint (else DEFAULT_ACCOUNT) and grants what it
// asks, without a form.
// Usage: node oidc-provider.mjs PORT REDIRECT_URL [DEFAULT_ACCOUNT]   (prints "listening ISSUER")
import Provider from 'oidc-provider';

const [port, redirect, fallback] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const provider = new Provider(issuer, {
  clients: [{
    client_id: 'tenure',
    client_secret: 'tenure-secret',
    redirect_uris: [redirect],
    grant_types: ['authorization_code'],
    response_types: ['code'],
  }],
  claims: { openid: ['sub'], email: ['email', 'email_verified'], profile: ['name'] },
  // The scopes' claims in the ID token too, as Okta, Entra ID and Google put the email.
  conformIdTokenClaims: false,
  findAccount: async (ctx, id) => ({
    accountId: id,
    claims: async () => ({ sub: id, email: id, email_verified: !id.startsWith('unverified'), name: id }),
  }),
  features: { devInteractions: { enabled: false } },
  interactions: { url: (ctx, interaction) => `/interaction/${interaction.uid}` },
});

provider.use(async (ctx, next) => {
  if (!/^\/interaction\/[^/]+$/.test(ctx.path)) return next();
  const details = await provider.interactionDetails(ctx.req, ctx.res);
  const { prompt, params } = details;
  let result;
  if (prompt.name === 'login') {
    result = { login: { accountId: params.login_hint || fallback || 'nobody@example.test' } };
  } else {
    const grant = new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
    grant.addOIDCScope(params.scope);
    if (prompt.details.missingOIDCClaims) grant.addOIDCClaims(prompt.details.missingOIDCClaims);
    result = { consent: { grantId: await grant.save() } };
  }
  const to = await provider.interactionResult(ctx.req, ctx.res, result, { mergeWithLastSubmission: false });
  ctx.status = 303;
  ctx.redirect(to);
});

provider.listen(Number(port), '127.0.0.1', () => console.log(`listening ${issuer}`));
