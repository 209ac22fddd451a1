// "My duties": upcoming and past assignments and requests, open duties to sign up for (when
// the person's roles let them read the duty calendar), and a duty's details. The last list is
// kept on the device for offline use.

import { ApiError, call } from '../api';
import { alertBox, explain, notice, type Ctx } from '../ctx';
import { fill, focusHeading, h } from '../dom';
import { t, when, type Key } from '../i18n';
import * as store from '../store';
import type { Duty, MyDuty, Page } from '../types';

const DAY = 86_400_000;
let known = new Map<string, MyDuty | { duty: Duty; assignment: null }>();

function org(ctx: Ctx): string {
  return `/api/v1/orgs/${encodeURIComponent(ctx.session.slug)}`;
}

function item(d: Duty, status: string | null, role: string | null): HTMLElement {
  return h(
    'li',
    {},
    h(
      'a',
      { class: 'row', href: `#/duty/${d.id}` },
      h('strong', {}, d.title),
      h('span', { class: 'muted' }, `${when(d.starts_at, d.time_zone)}${d.location ? ` · ${d.location}` : ''}`),
      h(
        'span',
        { class: 'badges' },
        d.state === 'cancelled' ? h('span', { class: 'badge bad' }, t('cancelledDuty')) : null,
        status ? h('span', { class: `badge ${status}` }, t(`status_${status}` as Key)) : null,
        role ? h('span', { class: 'badge' }, t(`role_${role}` as Key)) : null,
      ),
    ),
  );
}

function list(items: HTMLElement[]): HTMLElement {
  return items.length ? h('ul', { class: 'list' }, items) : h('p', { class: 'muted' }, t('noDuties'));
}

export async function duties(ctx: Ctx): Promise<void> {
  const upcoming = h('section', { 'aria-labelledby': 'h-up' }, h('h2', { id: 'h-up' }, t('upcoming')), h('p', { role: 'status' }, t('loading')));
  const open = h('section', { 'aria-labelledby': 'h-open', hidden: true }, h('h2', { id: 'h-open' }, t('openDuties')));
  const past = h('section', { 'aria-labelledby': 'h-past' }, h('h2', { id: 'h-past' }, t('past')));
  fill(ctx.main, h('h1', {}, t('duties')), upcoming, open, past);
  focusHeading(ctx.main);

  const now = Date.now();
  let mine: MyDuty[];
  try {
    mine = (await call<Page<MyDuty>>(ctx.session, 'api', '/api/v1/me/duties?limit=100')).items;
    await store.set('duties.mine', mine);
  } catch (e) {
    const cached = await store.get<MyDuty[]>('duties.mine');
    const why = explain(ctx, e);
    if (!cached) {
      fill(upcoming, h('h2', { id: 'h-up' }, t('upcoming')), alertBox(why));
      return;
    }
    mine = cached.filter((m) => Date.parse(m.duty.ends_at) > now);
  }
  for (const m of mine) known.set(m.duty.id, m);
  fill(upcoming, h('h2', { id: 'h-up' }, t('upcoming')), list(mine.map((m) => item(m.duty, m.assignment.status, m.assignment.role))));
  if (ctx.offline) return;

  try {
    const q = new URLSearchParams({ from: new Date(now).toISOString(), to: new Date(now + 30 * DAY).toISOString(), state: 'planned', limit: '100' });
    const assigned = new Set(mine.map((m) => m.duty.id));
    const all = (await call<Page<Duty>>(ctx.session, 'api', `${org(ctx)}/duties?${q}`)).items.filter((d) => !assigned.has(d.id));
    for (const d of all) known.set(d.id, { duty: d, assignment: null });
    fill(open, h('h2', { id: 'h-open' }, t('openDuties')), list(all.map((d) => item(d, null, null))));
    open.hidden = false;
  } catch (e) {
    if (!(e instanceof ApiError && e.problem.status === 403)) open.append(alertBox(explain(ctx, e)));
  }
  try {
    const q = new URLSearchParams({ from: new Date(now - 90 * DAY).toISOString(), to: new Date(now).toISOString(), limit: '100' });
    const old = (await call<Page<MyDuty>>(ctx.session, 'api', `/api/v1/me/duties?${q}`)).items.filter((m) => Date.parse(m.duty.starts_at) < now);
    for (const m of old) known.set(m.duty.id, m);
    fill(past, h('h2', { id: 'h-past' }, t('past')), list(old.reverse().map((m) => item(m.duty, m.assignment.status, m.assignment.role))));
  } catch (e) {
    past.append(alertBox(explain(ctx, e)));
  }
}

export async function duty(ctx: Ctx, id: string): Promise<void> {
  let k = known.get(id);
  if (!k) {
    const cached = (await store.get<MyDuty[]>('duties.mine')) ?? [];
    const hit = cached.find((m) => m.duty.id === id);
    if (hit) k = hit;
  }
  if (!k) {
    try {
      const d = await call<Duty>(ctx.session, 'api', `${org(ctx)}/duties/${encodeURIComponent(id)}`);
      k = { duty: d, assignment: null };
    } catch (e) {
      fill(ctx.main, h('a', { href: '#/duties', class: 'back' }, t('back')), alertBox(explain(ctx, e)));
      return;
    }
  }
  const d = k.duty;
  const a = k.assignment;
  const out = h('div', { 'aria-live': 'polite' });
  const note = h('input', { id: 'signup-note', name: 'note', maxlength: 500 });
  const signUp =
    !a && d.state === 'planned'
      ? h(
          'form',
          {
            class: 'card',
            onsubmit: async (ev: Event) => {
              ev.preventDefault();
              try {
                await call(ctx.session, 'api', `${org(ctx)}/duties/${encodeURIComponent(d.id)}/requests`, {
                  method: 'POST',
                  body: note.value.trim() ? { note: note.value.trim() } : {},
                });
                known.delete(d.id);
                fill(out, notice(t('signedUp')));
                (ev.target as HTMLFormElement).remove();
              } catch (e) {
                fill(out, alertBox(explain(ctx, e)));
              }
            },
          },
          h('label', { for: 'signup-note' }, t('note')),
          note,
          h('button', { type: 'submit' }, t('signUp')),
        )
      : null;
  fill(
    ctx.main,
    h('a', { href: '#/duties', class: 'back' }, t('back')),
    h('h1', {}, d.title),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, t('when')),
      h('dd', {}, `${when(d.starts_at, d.time_zone)} – ${when(d.ends_at, d.time_zone)}`),
      d.location ? [h('dt', {}, t('where')), h('dd', {}, d.location)] : null,
    ),
    d.description ? h('p', {}, d.description) : null,
    h(
      'p',
      { class: 'badges' },
      d.state === 'cancelled' ? h('span', { class: 'badge bad' }, t('cancelledDuty')) : null,
      a ? h('span', { class: `badge ${a.status}` }, t(`status_${a.status}` as Key)) : null,
      a ? h('span', { class: 'badge' }, t(`role_${a.role}` as Key)) : null,
    ),
    d.chat ? h('p', { class: 'muted' }, t('chatOn')) : null,
    d.chat && a?.status === 'confirmed' ? h('p', {}, h('a', { href: `#/chat/${d.id}`, class: 'button', id: 'open-chat' }, t('openChat'))) : null,
    signUp,
    out,
  );
  focusHeading(ctx.main);
}

export function forgetDuties(): void {
  known = new Map();
}
