// The offline contact directory: kept in step with the sync feed
// (`GET /api/v1/orgs/{org}/contacts/changes`), which only ever holds what the person may see,
// and searched in memory as the person types.

import { call } from './api';
import type { Session } from './auth';
import * as store from './store';
import type { ContactChanges, Person } from './types';

export interface Entry {
  p: Person;
  name: string;
  hay: string;
  digits: string;
}

let entries: Entry[] | null = null;

export function fold(s: string): string {
  return s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase();
}

function entry(p: Person): Entry {
  const name = `${p.given_name} ${p.family_name}`.trim();
  const hay = fold(
    [name, p.family_name, ...p.emails.map((e) => e.value), ...p.units.map((u) => u.name), ...p.groups, ...p.skills, p.address.locality ?? ''].join(' '),
  );
  const digits = p.phones.map((x) => x.value.replace(/\D/g, '')).join(' ');
  return { p, name, hay, digits };
}

function sortKey(a: Entry, b: Entry): number {
  return a.p.family_name.localeCompare(b.p.family_name) || a.p.given_name.localeCompare(b.p.given_name);
}

/** The local copy, loaded once per page. */
export async function all(): Promise<Entry[]> {
  if (!entries) {
    entries = (await store.contacts()).filter((p) => p.active).map(entry).sort(sortKey);
  }
  return entries;
}

/** Brings the local copy up to date; returns how many changes arrived. */
export async function sync(session: Session): Promise<number> {
  let cursor = await store.get<string>('contacts.cursor');
  let changed = 0;
  for (;;) {
    const q = new URLSearchParams({ limit: '1000' });
    if (cursor) q.set('cursor', cursor);
    const page = await call<ContactChanges>(session, 'api', `/api/v1/orgs/${encodeURIComponent(session.slug)}/contacts/changes?${q}`);
    await store.applyContacts(page.reset, page.upserts, page.removals, page.next_cursor);
    changed += page.upserts.length + page.removals.length + (page.reset ? 1 : 0);
    cursor = page.next_cursor;
    if (!page.more) break;
  }
  if (changed > 0) entries = null;
  return changed;
}

/** People matching every word of `query` (names, e-mails, units, groups, skills, place; digits
 * also match phone numbers), at most `limit` of them, and how many matched in all. */
export function search(list: Entry[], query: string, limit: number): { hits: Entry[]; total: number } {
  const words = fold(query).split(/\s+/).filter(Boolean);
  if (words.length === 0) return { hits: list.slice(0, limit), total: list.length };
  const hits: Entry[] = [];
  let total = 0;
  for (const e of list) {
    let ok = true;
    for (const w of words) {
      const d = w.replace(/\D/g, '');
      if (!(e.hay.includes(w) || (d.length >= 3 && d.length === w.replace(/[\s+()/.-]/g, '').length && e.digits.includes(d)))) {
        ok = false;
        break;
      }
    }
    if (ok) {
      total++;
      if (hits.length < limit) hits.push(e);
    }
  }
  return { hits, total };
}

export function forget(): void {
  entries = null;
}
