// The contact directory from the device's own copy: search as you type, works offline.

import { all, search, type Entry } from '../contacts';
import { alertBox, type Ctx } from '../ctx';
import { fill, focusHeading, h } from '../dom';
import { t } from '../i18n';
import * as store from '../store';
import type { Person } from '../types';

const SHOWN = 50;
let lastQuery = '';

function row(e: Entry): HTMLElement {
  const phone = e.p.phones[0]?.value;
  return h(
    'li',
    {},
    h(
      'a',
      { class: 'row', href: `#/contact/${e.p.id}` },
      h('strong', {}, e.name),
      h('span', { class: 'muted' }, [phone ?? '', e.p.units.map((u) => u.name).join(', ')].filter(Boolean).join(' · ')),
    ),
  );
}

export async function contacts(ctx: Ctx): Promise<void> {
  const list = await all();
  const synced = await store.get<number>('contacts.synced');
  const results = h('ul', { class: 'list', id: 'contact-results' });
  const count = h('p', { class: 'muted', role: 'status', id: 'contact-count' });
  const input = h('input', {
    id: 'contact-q',
    type: 'search',
    autocomplete: 'off',
    enterkeyhint: 'search',
    value: lastQuery,
  });
  const show = (): void => {
    performance.mark('contacts-search-start');
    lastQuery = input.value;
    const { hits, total } = search(list, input.value, SHOWN);
    results.replaceChildren(...hits.map(row));
    count.textContent = total === 0 ? t('noContacts') : t('contactsCount', { shown: hits.length, total });
    performance.measure('contacts-search', 'contacts-search-start');
  };
  input.addEventListener('input', show);
  fill(
    ctx.main,
    h('h1', {}, t('contacts')),
    h('p', { class: 'muted', id: 'contact-sync' }, synced ? t('lastSync', { time: new Date(synced).toLocaleString() }) : t('neverSynced')),
    h('div', { role: 'search' }, h('label', { for: 'contact-q' }, t('searchContacts')), input),
    count,
    results,
  );
  show();
  focusHeading(ctx.main);
}

function field(label: string, children: (Node | string | null)[]): HTMLElement[] {
  const shown = children.filter((c): c is Node | string => c !== null && c !== '');
  return shown.length ? [h('dt', {}, label), h('dd', {}, shown.map((c) => h('div', {}, c)))] : [];
}

export async function contact(ctx: Ctx, id: string): Promise<void> {
  const e = (await all()).find((x) => x.p.id === id);
  if (!e) {
    fill(ctx.main, h('a', { href: '#/contacts', class: 'back' }, t('back')), alertBox(t('noContacts')));
    return;
  }
  const p: Person = e.p;
  const a = p.address;
  const addr = [a.street, [a.postal_code, a.locality].filter(Boolean).join(' '), a.country].filter(Boolean).join(', ');
  fill(
    ctx.main,
    h('a', { href: '#/contacts', class: 'back' }, t('back')),
    h('h1', {}, e.name),
    h(
      'dl',
      { class: 'facts' },
      field(
        t('phones'),
        p.phones.map((x) => h('a', { href: `tel:${x.value}`, 'aria-label': `${t('call', { name: e.name })}: ${x.value}` }, x.value, h('span', { class: 'muted' }, ` (${x.type})`))),
      ),
      field(
        t('emails'),
        p.emails.map((x) => h('a', { href: `mailto:${x.value}`, 'aria-label': `${t('mail', { name: e.name })}: ${x.value}` }, x.value)),
      ),
      field(t('address'), [addr || null]),
      field(t('units'), p.units.map((u) => u.name)),
      field(t('groups'), p.groups),
      field(t('skills'), p.skills),
    ),
  );
  focusHeading(ctx.main);
}
