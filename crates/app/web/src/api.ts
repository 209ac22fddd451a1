// Calls to Carebridge's APIs and the portal with the person's access token (never to discovery
// and settings, which refuse credentials). One retry with a fresh token after a 401.

import { net, token, type Audience, type Session } from './auth';
import type { Problem } from './types';

export class ApiError extends Error {
  constructor(public problem: Problem) {
    super(problem.detail ?? problem.title);
  }
}

function base(session: Session, audience: Audience): string {
  return audience === 'portal' ? (session.portalUrl ?? location.origin).replace(/\/$/, '') : '';
}

export async function call<T>(
  session: Session,
  audience: Audience,
  path: string,
  init: { method?: string; body?: unknown } = {},
): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    const tok = await token(session, audience, attempt > 0);
    const headers: Record<string, string> = { authorization: `Bearer ${tok}`, accept: 'application/json' };
    if (init.body !== undefined) headers['content-type'] = 'application/json';
    const r = await net(base(session, audience) + path, {
      method: init.method ?? 'GET',
      headers,
      credentials: 'omit',
      body: init.body === undefined ? null : JSON.stringify(init.body),
    });
    if (r.status === 401 && attempt === 0) continue;
    if (r.status === 204) return undefined as T;
    const text = await r.text();
    const json = text ? (JSON.parse(text) as unknown) : undefined;
    if (!r.ok) {
      const p = (json ?? { status: r.status, title: r.statusText }) as Problem;
      throw new ApiError({ ...p, status: r.status });
    }
    return json as T;
  }
}

/** Public discovery documents: fetched with no credential at all, as the seed's flow asks. */
export async function publicJson<T>(path: string): Promise<T> {
  // Revalidated every time (a 304 when unchanged): a switched feature shows at once.
  const r = await net(path, { credentials: 'omit', cache: 'no-cache', headers: { accept: 'application/json' } });
  if (!r.ok) {
    const p = (await r.json().catch(() => ({ title: r.statusText }))) as Problem;
    throw new ApiError({ ...p, status: r.status });
  }
  return (await r.json()) as T;
}
