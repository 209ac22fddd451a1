// The account page: who is signed in, in which organisation, the organisation's help contacts,
// and sign-out (which wipes everything the app keeps on the device).

import { signOut } from '../auth';
import type { Ctx } from '../ctx';
import { fill, focusHeading, h } from '../dom';
import { t } from '../i18n';
import * as store from '../store';
import type { Discovery } from '../types';

export async function account(ctx: Ctx): Promise<void> {
  const d = await store.get<Discovery>('discovery');
  const s = d?.support;
  fill(
    ctx.main,
    h('h1', {}, t('account')),
    h('p', { id: 'who' }, t('signedInAs', { name: ctx.session.name || ctx.session.sub })),
    h(
      'dl',
      { class: 'facts' },
      h('dt', {}, t('organisation')),
      h('dd', {}, ctx.session.orgName),
      s && (s.email || s.phone || s.url)
        ? [
            h('dt', {}, t('support')),
            h(
              'dd',
              {},
              s.phone ? h('div', {}, h('a', { href: `tel:${s.phone}` }, s.phone)) : null,
              s.email ? h('div', {}, h('a', { href: `mailto:${s.email}` }, s.email)) : null,
              s.url ? h('div', {}, h('a', { href: s.url, rel: 'noopener' }, s.url)) : null,
            ),
          ]
        : null,
    ),
    h('p', { class: 'muted' }, t('signOutHint')),
    h(
      'button',
      {
        type: 'button',
        id: 'sign-out',
        onclick: async () => {
          // This browser's chat device goes first (the server removes it from every chat).
          if (await store.get('chat.device')) await (await import('./chat')).removeDevice(ctx);
          await signOut(ctx.session);
        },
      },
      t('signOut'),
    ),
  );
  focusHeading(ctx.main);
}
