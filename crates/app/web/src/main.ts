// The Carebridge app: boots the service worker, finishes sign-ins on /app/callback, and shows
// the person's views (hash routes) from the session kept in IndexedDB. Follows seed 000's flow:
// discovery and settings are read without any credential; the access token goes only to the
// APIs and the portal.

import './style.css';
import { call, publicJson } from './api';
import { begin, complete, Offline, SessionEnded, signOut, type Session } from './auth';
import { sync } from './contacts';
import { alertBox, type Ctx } from './ctx';
import { fill, h } from './dom';
import { setLang, lang, t, type Key } from './i18n';
import * as store from './store';
import type { Discovery, PortalClient } from './types';
import { account } from './views/account';
import { care } from './views/care';
import { contact, contacts } from './views/contacts';
import { duties, duty } from './views/duties';
import { picker, signInTo } from './views/picker';

const root = document.getElementById('app') as HTMLElement;

async function boot(): Promise<void> {
  setLang(lang);
  if ('serviceWorker' in navigator) {
    navigator.serviceWorker.register('/app/sw.js', { scope: '/app/' }).catch((e: unknown) => console.warn('service worker', e));
  }
  let session = await store.get<Session>('session');
  if (location.pathname === '/app/callback') {
    const params = new URLSearchParams(location.search);
    history.replaceState(null, '', '/app/');
    fill(root, h('main', { id: 'main' }, h('p', { role: 'status' }, t('signingIn'))));
    try {
      const r = await complete(params, session);
      if (r.kind === 'error') {
        picker(root, r.message);
        return;
      }
      if (r.kind === 'signed-in' && r.discovery.portal_url !== null) {
        await begin(r.discovery, 'portal');
        return;
      }
      if (r.kind !== 'none') session = r.session;
    } catch (e) {
      picker(root, e instanceof Offline ? t('offline') : t('error'));
      return;
    }
  }
  if (!session || !session.refresh) {
    const org = new URLSearchParams(location.search).get('org');
    picker(root);
    if (org) await signInTo(org, root.querySelector('#org-results') as HTMLElement);
    return;
  }
  await shell(session);
}

async function shell(session: Session): Promise<void> {
  const nav = h('nav', { class: 'tabs', 'aria-label': t('mainNav') });
  const banner = h('p', { class: 'offline', role: 'status', hidden: true }, t('offline'));
  const main = h('main', { id: 'main' });
  const title = h('span', { class: 'brand' }, session.orgName);
  fill(root, h(
      'a',
      {
        class: 'skip',
        href: '#main',
        // The app routes by the hash: move the focus instead of following the link.
        onclick: (e: Event) => {
          e.preventDefault();
          main.tabIndex = -1;
          main.focus();
        },
      },
      t('skip'),
    ), h('header', { class: 'bar' }, title), banner, nav, main);

  const ctx: Ctx = {
    session,
    main,
    clients: await store.get<PortalClient[]>('portal.clients') ?? null,
    directory: (await store.get<Discovery>('discovery'))?.features.includes('directory') ?? true,
    kind: null,
    offline: !navigator.onLine,
    markOffline(off: boolean) {
      ctx.offline = off;
      banner.hidden = !off;
    },
    ended() {
      void store.wipe().then(() => picker(root, t('sessionEnded')));
    },
  };
  ctx.markOffline(ctx.offline);
  window.addEventListener('online', () => {
    ctx.markOffline(false);
    void refreshData(ctx).then(route);
  });
  window.addEventListener('offline', () => ctx.markOffline(true));

  const tabs = (): [string, Key][] => {
    const member = ctx.kind === null || ctx.kind === 'staff' || ctx.kind === 'volunteer';
    const out: [string, Key][] = [];
    if (member) out.push(['#/duties', 'duties']);
    if (member && ctx.directory) out.push(['#/contacts', 'contacts']);
    if (ctx.clients && ctx.clients.length > 0) out.push(['#/care', 'care']);
    out.push(['#/account', 'account']);
    return out;
  };

  async function route(): Promise<void> {
    const [, hashView = '', arg] = location.hash.split('/');
    // The contacts are not offered while the organisation has its directory switched off.
    const view = !ctx.directory && (hashView === 'contacts' || hashView === 'contact') ? '' : hashView;
    const list = tabs();
    const current = `#/${view}`;
    fill(
      nav,
      h(
        'ul',
        {},
        list.map(([href, key]) =>
          h('li', {}, h('a', { href, 'aria-current': current.startsWith(href) || ((view === 'duty' || view === 'chat') && href === '#/duties') || (view === 'contact' && href === '#/contacts') ? 'page' : null }, t(key))),
        ),
      ),
    );
    switch (view) {
      case 'duties':
        return duties(ctx);
      case 'duty':
        return duty(ctx, arg ?? '');
      case 'contacts':
        return contacts(ctx);
      case 'contact':
        return contact(ctx, arg ?? '');
      case 'care':
        return care(ctx, arg);
      case 'chat': {
        // The MLS library is loaded only for the chat.
        const m = await import('./views/chat');
        return m.chat(ctx, arg ?? '');
      }
      case 'account':
        return account(ctx);
      default: {
        const first = list[0]?.[0] ?? '#/account';
        history.replaceState(null, '', first);
        return route();
      }
    }
  }
  window.addEventListener('hashchange', () => void route());

  await refreshData(ctx);
  // A browser that is already a chat device keeps its chats in step (commits the roster's
  // changes, joins new chats) while the app is open.
  if (!ctx.offline && (await store.get('chat.device'))) {
    void import('./views/chat').then((m) => m.device(ctx)).catch((e: unknown) => console.warn('chat', e));
  }
  if (!location.hash) {
    const start = ctx.kind === 'client' || ctx.kind === 'relative' ? '#/care' : '#/duties';
    history.replaceState(null, '', start);
  }
  await route();
}

/** Discovery (no credential), the contact copy and the portal's clients, when online. */
async function refreshData(ctx: Ctx): Promise<void> {
  const s = ctx.session;
  try {
    const d = await publicJson<Discovery>(`/discovery/${encodeURIComponent(s.slug)}`);
    await store.set('discovery', d);
    ctx.directory = d.features.includes('directory');
    await publicJson<Record<string, unknown>>(`/discovery/${encodeURIComponent(s.slug)}/settings`).then((x) => store.set('settings', x));
    if (d.branding?.primary_color) document.documentElement.style.setProperty('--brand', d.branding.primary_color);
    await sync(s);
    if (s.portalRefresh && d.portal_url !== null) {
      ctx.clients = await call<PortalClient[]>(s, 'portal', '/portal/v1/clients');
      await store.set('portal.clients', ctx.clients);
    } else if (d.portal_url === null) {
      // The organisation switched its portal off.
      ctx.clients = null;
      await store.set('portal.clients', null);
    }
    ctx.markOffline(false);
  } catch (e) {
    if (e instanceof Offline) ctx.markOffline(true);
    else if (e instanceof SessionEnded) ctx.ended();
    else root.querySelector('main')?.prepend(alertBox(e instanceof Error ? e.message : t('error')));
  }
  const me = (await store.contacts()).find((p) => p.id === s.sub);
  ctx.kind = me?.kind ?? null;
}

boot().catch((e: unknown) => {
  console.error(e);
  fill(root, alertBox(t('error')), h('button', { type: 'button', onclick: () => void signOut(undefined) }, t('signOut')));
});
