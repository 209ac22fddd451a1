// An independent OpenID provider for Carebridge's federation test: panva/oidc-provider,
// configured like an Entra ID tenant as far as Carebridge cares (RS256 ID tokens carrying
// `oid`, `email` and `email_verified`). Its development login form accepts any login name;
// the account's claims come from ACCOUNTS below. Prints "listening <issuer>" when ready.
//
// Environment: REDIRECT_URI (Carebridge's /oauth2/upstream/callback), CLIENT_ID, CLIENT_SECRET.
import { createServer } from 'node:http';
import Provider from 'oidc-provider';

const ACCOUNTS = {
  vera: { oid: '7f3c2a10-0000-4000-8000-000000000001', email: 'vera@example.org', email_verified: true },
  mail: { oid: '7f3c2a10-0000-4000-8000-000000000002', email: 'mia@example.org', email_verified: true },
  unverified: { oid: '7f3c2a10-0000-4000-8000-000000000003', email: 'mia@example.org', email_verified: false },
  stranger: { oid: '7f3c2a10-0000-4000-8000-000000000004', email: 'stranger@example.org', email_verified: true },
};

const server = createServer();
server.listen(0, '127.0.0.1', () => {
  const issuer = `http://127.0.0.1:${server.address().port}`;
  const provider = new Provider(issuer, {
    clients: [{
      client_id: process.env.CLIENT_ID,
      client_secret: process.env.CLIENT_SECRET,
      redirect_uris: [process.env.REDIRECT_URI],
      grant_types: ['authorization_code'],
      response_types: ['code'],
    }],
    claims: { openid: ['sub', 'oid'], email: ['email', 'email_verified'], profile: ['name'] },
    conformIdTokenClaims: false,
    pkce: { required: () => true },
    features: { devInteractions: { enabled: true } },
    cookies: { keys: ['carebridge-test-only'] },
    async findAccount(ctx, id) {
      const a = ACCOUNTS[id];
      if (!a) return undefined;
      return { accountId: id, async claims() { return { sub: `sub-${id}`, name: id, ...a }; } };
    },
  });
  provider.proxy = false;
  provider.on('server_error', (ctx, err) => console.error('oidc-provider server_error:', err));
  server.on('request', provider.callback());
  console.log(`listening ${issuer}`);
});
