// Sign-in through Carebridge's OpenID Connect provider as the public client the discovery
// document names: authorization code with PKCE (S256). Two grants: one for Carebridge's APIs
// (directory, duties, chat) and, when the organisation has a portal, a second one for the
// portal (a token is never valid for both audiences). The second is asked for silently
// (`prompt=none`) right after the first. Access tokens live in memory only; refresh tokens in
// the app's IndexedDB (wiped on sign-out).

import * as store from './store';
import type { Discovery } from './types';

export type Audience = 'api' | 'portal';

export const API_SCOPES = 'openid profile email phone offline_access directory:read duties:read chat';
export const PORTAL_SCOPES = 'openid profile offline_access portal';

export interface Session {
  slug: string;
  orgId: string;
  orgName: string;
  issuer: string;
  clientId: string;
  tokenEndpoint: string;
  revocationEndpoint: string | null;
  endSessionEndpoint: string | null;
  sub: string;
  name: string;
  idToken: string;
  refresh: string;
  portalUrl: string | null;
  portalRefresh: string | null;
}

interface Pending {
  state: string;
  verifier: string;
  audience: Audience;
  discovery: Discovery;
  endpoints: Endpoints;
}

interface Endpoints {
  authorization_endpoint: string;
  token_endpoint: string;
  revocation_endpoint?: string;
  end_session_endpoint?: string;
}

/** The network is not there (as opposed to an answer that says no). */
export class Offline extends Error {}
/** The refresh token no longer works: the person must sign in again. */
export class SessionEnded extends Error {}

const PENDING = 'cb.pending';

export function redirectUri(): string {
  return `${location.origin}/app/callback`;
}

function b64url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n: number): string {
  return b64url(crypto.getRandomValues(new Uint8Array(n)));
}

async function challenge(verifier: string): Promise<string> {
  const d = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  return b64url(new Uint8Array(d));
}

/** Fetch that turns a network failure into [`Offline`]. */
export async function net(input: string, init?: RequestInit): Promise<Response> {
  try {
    return await fetch(input, init);
  } catch {
    throw new Offline('offline');
  }
}

async function endpoints(issuer: string): Promise<Endpoints> {
  const r = await net(`${issuer.replace(/\/$/, '')}/.well-known/openid-configuration`, { credentials: 'omit' });
  if (!r.ok) throw new Error(`the identity provider answered ${r.status}`);
  return (await r.json()) as Endpoints;
}

/** Goes to the identity provider's sign-in page (or, for the portal grant, silently back). */
export async function begin(d: Discovery, audience: Audience): Promise<void> {
  const ep = await endpoints(d.issuer);
  const verifier = random(48);
  const state = random(24);
  const pending: Pending = { state, verifier, audience, discovery: d, endpoints: ep };
  sessionStorage.setItem(PENDING, JSON.stringify(pending));
  const u = new URL(ep.authorization_endpoint);
  u.searchParams.set('response_type', 'code');
  u.searchParams.set('client_id', d.client_id);
  u.searchParams.set('redirect_uri', redirectUri());
  u.searchParams.set('scope', audience === 'api' ? API_SCOPES : PORTAL_SCOPES);
  u.searchParams.set('state', state);
  u.searchParams.set('code_challenge', await challenge(verifier));
  u.searchParams.set('code_challenge_method', 'S256');
  u.searchParams.set('org', d.slug);
  if (audience === 'portal') u.searchParams.set('prompt', 'none');
  location.assign(u.toString());
}

interface Tokens {
  access_token: string;
  refresh_token?: string;
  id_token?: string;
  expires_in?: number;
}

function claims(jwt: string): Record<string, unknown> {
  const part = jwt.split('.')[1] ?? '';
  const bin = atob(part.replace(/-/g, '+').replace(/_/g, '/'));
  const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes)) as Record<string, unknown>;
}

const access = new Map<Audience, { token: string; until: number }>();
const inflight = new Map<Audience, Promise<string>>();

function remember(audience: Audience, t: Tokens): void {
  access.set(audience, { token: t.access_token, until: Date.now() + ((t.expires_in ?? 300) - 30) * 1000 });
}

export type CallbackResult =
  | { kind: 'signed-in'; session: Session; discovery: Discovery }
  | { kind: 'portal-done'; session: Session }
  | { kind: 'none' }
  | { kind: 'error'; message: string };

/** Finishes a sign-in on `/app/callback`. */
export async function complete(params: URLSearchParams, current: Session | undefined): Promise<CallbackResult> {
  const raw = sessionStorage.getItem(PENDING);
  sessionStorage.removeItem(PENDING);
  const pending = raw ? (JSON.parse(raw) as Pending) : null;
  if (!pending || params.get('state') !== pending.state) return { kind: 'none' };
  const error = params.get('error');
  const code = params.get('code');
  if (pending.audience === 'portal') {
    if (!current) return { kind: 'none' };
    if (error || !code) return { kind: 'portal-done', session: current };
  }
  if (error || !code) return { kind: 'error', message: params.get('error_description') ?? error ?? 'no code' };
  const r = await net(pending.endpoints.token_endpoint, {
    method: 'POST',
    credentials: 'omit',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code,
      redirect_uri: redirectUri(),
      client_id: pending.discovery.client_id,
      code_verifier: pending.verifier,
    }),
  });
  const body = (await r.json()) as Tokens & { error_description?: string; error?: string };
  if (!r.ok) return { kind: 'error', message: body.error_description ?? body.error ?? `HTTP ${r.status}` };
  if (pending.audience === 'portal' && current) {
    remember('portal', body);
    const session = { ...current, portalRefresh: body.refresh_token ?? null };
    await store.set('session', session);
    return { kind: 'portal-done', session };
  }
  const id = body.id_token ? claims(body.id_token) : {};
  const d = pending.discovery;
  const session: Session = {
    slug: d.slug,
    orgId: d.org_id,
    orgName: d.name,
    issuer: d.issuer,
    clientId: d.client_id,
    tokenEndpoint: pending.endpoints.token_endpoint,
    revocationEndpoint: pending.endpoints.revocation_endpoint ?? null,
    endSessionEndpoint: pending.endpoints.end_session_endpoint ?? null,
    sub: String(id['sub'] ?? ''),
    name: String(id['name'] ?? [id['given_name'], id['family_name']].filter(Boolean).join(' ')),
    idToken: body.id_token ?? '',
    refresh: body.refresh_token ?? '',
    portalUrl: d.portal_url,
    portalRefresh: null,
  };
  remember('api', body);
  await store.set('session', session);
  await store.set('discovery', d);
  return { kind: 'signed-in', session, discovery: d };
}

/** A current access token for `audience`, refreshed (and the refresh token rotated) when due. */
export async function token(session: Session, audience: Audience, fresh = false): Promise<string> {
  const have = access.get(audience);
  if (!fresh && have && have.until > Date.now()) return have.token;
  const running = inflight.get(audience);
  if (running) return running;
  const p = refresh(session, audience).finally(() => inflight.delete(audience));
  inflight.set(audience, p);
  return p;
}

async function refresh(session: Session, audience: Audience): Promise<string> {
  const rt = audience === 'api' ? session.refresh : session.portalRefresh;
  if (!rt) throw new SessionEnded('no grant');
  const r = await net(session.tokenEndpoint, {
    method: 'POST',
    credentials: 'omit',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: 'refresh_token', refresh_token: rt, client_id: session.clientId }),
  });
  if (r.status === 400 || r.status === 401) throw new SessionEnded('refresh refused');
  if (!r.ok) throw new Error(`token endpoint answered ${r.status}`);
  const t = (await r.json()) as Tokens;
  remember(audience, t);
  // Read the stored session again: the other grant may have rotated meanwhile.
  const now = ((await store.get<Session>('session')) ?? session) as Session;
  if (t.refresh_token) {
    if (audience === 'api') now.refresh = t.refresh_token;
    else now.portalRefresh = t.refresh_token;
    session.refresh = now.refresh;
    session.portalRefresh = now.portalRefresh;
    await store.set('session', now);
  }
  return t.access_token;
}

/** Revokes both grants (when online), wipes everything the app stored, and ends the identity
 * session, which sends the browser back to the app's start. */
export async function signOut(session: Session | undefined): Promise<void> {
  access.clear();
  if (session?.revocationEndpoint) {
    for (const rt of [session.refresh, session.portalRefresh]) {
      if (!rt) continue;
      try {
        await fetch(session.revocationEndpoint, {
          method: 'POST',
          credentials: 'omit',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ token: rt, token_type_hint: 'refresh_token', client_id: session.clientId }),
        });
      } catch {
        // Offline: the local data goes anyway; the grant ends with its lifetime.
      }
    }
  }
  await store.wipe();
  if (session?.endSessionEndpoint && navigator.onLine) {
    const u = new URL(session.endSessionEndpoint);
    u.searchParams.set('client_id', session.clientId);
    u.searchParams.set('post_logout_redirect_uri', redirectUri());
    if (session.idToken) u.searchParams.set('id_token_hint', session.idToken);
    location.assign(u.toString());
  } else {
    location.assign('/app/');
  }
}
