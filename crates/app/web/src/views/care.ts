// For clients and relatives (the portal): the clients the person may act for, upcoming visits
// with who is coming, requests to move or cancel, messages with the organisation, and the
// iCalendar subscription link. What each link allows comes from the portal.

import { call } from '../api';
import { alertBox, explain, notice, type Ctx } from '../ctx';
import { fill, focusHeading, h } from '../dom';
import { day, t, time, when, type Key } from '../i18n';
import type { Appointment, Message, PortalClient } from '../types';

const DAY = 86_400_000;

function path(c: PortalClient, rest: string): string {
  return `/portal/v1/clients/${encodeURIComponent(c.id)}${rest}`;
}

function requestForm(ctx: Ctx, c: PortalClient, a: Appointment, kind: 'move' | 'cancel', done: () => void): HTMLElement {
  const id = `${kind}-${a.id}`;
  const reason = h('textarea', { id: `${id}-reason`, required: true, maxlength: 2000, rows: 2 });
  const start = kind === 'move' ? h('input', { id: `${id}-start`, type: 'datetime-local', required: true }) : null;
  const out = h('div', { 'aria-live': 'polite' });
  const form: HTMLFormElement = h(
    'form',
    {
      class: 'card',
      onsubmit: async (ev: Event) => {
        ev.preventDefault();
        const body: Record<string, string> = { kind, reason: reason.value.trim() };
        if (start) {
          if (!start.value) {
            fill(out, alertBox(t('required')));
            return;
          }
          body['wished_start'] = new Date(start.value).toISOString();
        }
        try {
          await call(ctx.session, 'portal', path(c, `/appointments/${encodeURIComponent(a.id)}/requests`), { method: 'POST', body });
          form.remove();
          done();
        } catch (e) {
          fill(out, alertBox(explain(ctx, e)));
        }
      },
    },
    start ? [h('label', { for: `${id}-start` }, t('wishedStart')), start] : null,
    h('label', { for: `${id}-reason` }, t('reason')),
    reason,
    h('div', { class: 'inline' }, h('button', { type: 'submit' }, t('send')), h('button', { type: 'button', class: 'secondary', onclick: () => form.remove() }, t('cancel'))),
    out,
  );
  return form;
}

function visit(ctx: Ctx, c: PortalClient, a: Appointment, reload: () => void): HTMLElement {
  const li = h('li', { class: 'card' });
  const open = a.request?.state === 'open';
  const actions =
    c.permissions.appointments && a.status !== 'cancelled' && !open && Date.parse(a.starts_at) > Date.now()
      ? h(
          'div',
          { class: 'inline' },
          h('button', { type: 'button', class: 'secondary', onclick: () => li.append(requestForm(ctx, c, a, 'move', reload)) }, t('askMove')),
          h('button', { type: 'button', class: 'secondary', onclick: () => li.append(requestForm(ctx, c, a, 'cancel', reload)) }, t('askCancel')),
        )
      : null;
  li.append(
    h('h3', {}, `${day(a.starts_at, a.time_zone)}, ${time(a.starts_at, a.time_zone)}–${time(a.ends_at, a.time_zone)}`),
    h('p', {}, a.service),
    h('p', { class: 'carer' }, a.carer ? t('visitBy', { name: a.carer.first_name }) : t('visitNobody')),
    h(
      'p',
      { class: 'badges' },
      h('span', { class: `badge ${a.status === 'cancelled' ? 'bad' : a.status}` }, t(`status_${a.status}` as Key)),
      a.request ? h('span', { class: `badge ${a.request.state}` }, `${t(`request_${a.request.state}` as Key)} (${t(`kind_${a.request.kind}` as Key)})`) : null,
    ),
  );
  if (actions) li.append(actions);
  return li;
}

async function messages(ctx: Ctx, c: PortalClient, box: HTMLElement): Promise<void> {
  const list = h('ol', { class: 'list messages' });
  const subject = h('input', { id: 'msg-subject', required: true, maxlength: 200 });
  const body = h('textarea', { id: 'msg-body', required: true, maxlength: 10000, rows: 3 });
  const out = h('div', { 'aria-live': 'polite' });
  const load = async (): Promise<void> => {
    try {
      const ms = await call<Message[]>(ctx.session, 'portal', path(c, '/messages'));
      list.replaceChildren(
        ...(ms.length
          ? ms.map((m) =>
              h(
                'li',
                { class: m.direction === 'from_organisation' ? 'from-org' : 'to-org' },
                h('p', { class: 'muted' }, `${m.direction === 'from_organisation' ? t('fromOrg') : t('toOrg')} · ${when(m.created_at)}`),
                h('strong', {}, m.subject),
                h('p', { class: 'body' }, m.body),
              ),
            )
          : [h('li', { class: 'muted' }, t('noMessages'))]),
      );
    } catch (e) {
      fill(out, alertBox(explain(ctx, e)));
    }
  };
  fill(
    box,
    h('h2', { id: 'h-msg' }, t('messages')),
    list,
    h(
      'form',
      {
        class: 'card',
        onsubmit: async (ev: Event) => {
          ev.preventDefault();
          try {
            await call(ctx.session, 'portal', path(c, '/messages'), { method: 'POST', body: { subject: subject.value.trim(), body: body.value.trim() } });
            subject.value = '';
            body.value = '';
            fill(out);
            await load();
          } catch (e) {
            fill(out, alertBox(explain(ctx, e)));
          }
        },
      },
      h('label', { for: 'msg-subject' }, t('subject')),
      subject,
      h('label', { for: 'msg-body' }, t('message')),
      body,
      h('button', { type: 'submit' }, t('send')),
      out,
    ),
  );
  await load();
}

function calendar(ctx: Ctx, c: PortalClient): HTMLElement {
  const out = h('div', { 'aria-live': 'polite' });
  return h(
    'section',
    { 'aria-labelledby': 'h-cal' },
    h('h2', { id: 'h-cal' }, t('calendar')),
    h('p', { class: 'muted' }, t('calendarHint')),
    h(
      'div',
      { class: 'inline' },
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            try {
              const f = await call<{ url: string }>(ctx.session, 'portal', path(c, '/calendar-feed'), { method: 'POST' });
              fill(out, h('p', {}, h('a', { href: f.url.replace(/^https?:/, 'webcal:'), id: 'calendar-link' }, f.url)));
            } catch (e) {
              fill(out, alertBox(explain(ctx, e)));
            }
          },
        },
        t('calendarCreate'),
      ),
      h(
        'button',
        {
          type: 'button',
          class: 'secondary',
          onclick: async () => {
            try {
              await call(ctx.session, 'portal', path(c, '/calendar-feed'), { method: 'DELETE' });
              fill(out, notice(t('calendarRevoked')));
            } catch (e) {
              fill(out, alertBox(explain(ctx, e)));
            }
          },
        },
        t('calendarRevoke'),
      ),
    ),
    out,
  );
}

export async function care(ctx: Ctx, clientId: string | undefined): Promise<void> {
  const clients = ctx.clients ?? [];
  const c = clients.find((x) => x.id === clientId) ?? clients[0];
  if (!c) {
    fill(ctx.main, h('h1', {}, t('care')), h('p', { class: 'muted' }, t('appointmentsNone')));
    return;
  }
  const visits = h('ol', { class: 'list', id: 'visits' }, h('li', { role: 'status' }, t('loading')));
  const said = h('div', { 'aria-live': 'polite' });
  const msgBox = h('section', { 'aria-labelledby': 'h-msg' });
  const picker =
    clients.length > 1
      ? h(
          'nav',
          { class: 'chips', 'aria-label': t('client') },
          clients.map((x) => h('a', { href: `#/care/${x.id}`, 'aria-current': x.id === c.id ? 'page' : null }, `${x.given_name} ${x.family_name}`)),
        )
      : null;
  fill(
    ctx.main,
    h('h1', {}, t('care')),
    picker,
    h('p', { class: 'muted' }, t('forClient', { name: `${c.given_name} ${c.family_name}` })),
    c.permissions.appointments ? h('section', { 'aria-labelledby': 'h-visits' }, h('h2', { id: 'h-visits' }, t('upcoming')), said, visits) : null,
    c.permissions.messages ? msgBox : null,
    c.permissions.appointments ? calendar(ctx, c) : null,
  );
  focusHeading(ctx.main);
  const load = async (): Promise<void> => {
    try {
      const now = Date.now();
      const q = new URLSearchParams({ from: new Date(now).toISOString(), to: new Date(now + 60 * DAY).toISOString() });
      const list = await call<Appointment[]>(ctx.session, 'portal', path(c, `/appointments?${q}`));
      visits.replaceChildren(...(list.length ? list.map((a) => visit(ctx, c, a, () => void load().then(() => fill(said, notice(t('requestSent')))))) : [h('li', { class: 'muted' }, t('appointmentsNone'))]));
    } catch (e) {
      visits.replaceChildren(h('li', {}, alertBox(explain(ctx, e))));
    }
  };
  if (c.permissions.appointments) await load();
  if (c.permissions.messages) await messages(ctx, c, msgBox);
}
