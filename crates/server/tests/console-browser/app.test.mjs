// The member and client app (PWA) in a real browser: Debian's headless Chromium driven by
// Playwright, the app running under its own Content-Security-Policy, axe-core (WCAG 2.1 A/AA)
// on each main view, screenshots saved. Started by the Rust test `app_browser`, which runs the
// server and passes: BASE, MEMBER (e-mail), RELATIVE (mobile, E.164), PASSWORD, COLLEAGUE
// (name), COLLEAGUE_PHONE (E.164), CONTACTS (how many the member sees), SHOTS, CHROMIUM.
// SMS codes: this script prints "SMS <phone>" and reads the code from standard input.
// Exits non-zero with the failing step on any failure; prints "ok" at the end.

import { axe, env, expect, finish, launch, request, step, watch } from './app-lib.mjs';

const BASE = env('BASE');
const SHOTS = env('SHOTS');
const PASSWORD = env('PASSWORD');

async function smsCode(phone) {
  return request(`SMS ${phone}`);
}

const browser = await launch();

// Every request any page or the service worker sends, with all its headers.
const requests = [];
function capture(context) {
  context.on('request', (r) => {
    requests.push(r.allHeaders().then((h) => ({ url: r.url(), method: r.method(), auth: h['authorization'] ?? null })));
  });
}

async function signIn(page, login) {
  await page.waitForSelector('#login');
  await page.fill('#login', login);
  await page.fill('#password', PASSWORD);
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  if (await page.locator('#code').count()) {
    const code = await smsCode(login);
    await page.fill('#code', code);
    await Promise.all([page.waitForNavigation(), page.click('form[action="/oauth2/mfa"] button[type=submit]')]);
  }
}

async function storedContacts(page) {
  return page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const r = indexedDB.open('carebridge', 1);
        r.onupgradeneeded = () => {
          r.result.createObjectStore('kv');
          r.result.createObjectStore('contacts', { keyPath: 'id' });
        };
        r.onsuccess = () => {
          const db = r.result;
          const tx = db.transaction(['contacts', 'kv']);
          const n = tx.objectStore('contacts').count();
          const s = tx.objectStore('kv').get('session');
          tx.oncomplete = () => {
            db.close();
            resolve({ contacts: n.result, session: s.result !== undefined });
          };
        };
        r.onerror = () => reject(r.error);
      }),
  );
}

const errors = [];
try {
  // ---- a member ----------------------------------------------------------------------------
  const member = await browser.newContext({ locale: 'en-GB', viewport: { width: 390, height: 844 }, serviceWorkers: 'allow' });
  capture(member);
  const page = await member.newPage();
  watch(page, errors);

  step('the app opens on the organisation search');
  const loaded = [];
  page.on('requestfinished', (r) => loaded.push(r));
  const first = await page.goto(`${BASE}/app/`);
  expect(first.ok(), 'the shell loads');
  await page.waitForSelector('#org-q');
  await page.waitForLoadState('networkidle');
  // What the first visit transfers (compressed bodies as sent, headers included).
  let bytes = 0;
  for (const r of loaded) {
    const z = await r.sizes();
    bytes += z.responseBodySize + z.responseHeadersSize;
  }
  console.log(`first load: ${(bytes / 1024).toFixed(1)} KiB in ${loaded.length} requests (${loaded.map((r) => new URL(r.url()).pathname).join(' ')})`);
  expect(bytes < 200 * 1024, 'the app shell is under 200 KB');
  await axe(page, 'organisation search');
  await page.fill('#org-q', 'spitex');
  await page.click('form[role=search] button[type=submit]');
  await page.waitForSelector('#org-results button');
  expect((await page.textContent('#org-results')).includes('Spitex Acme'), 'the organisation is found by name');
  await page.screenshot({ path: `${SHOTS}/01-find-organisation.png`, fullPage: true });

  step('sign in through the identity provider (code + PKCE) and the silent portal grant');
  await Promise.all([page.waitForNavigation(), page.click('#org-results button')]);
  expect(page.url().startsWith(`${BASE}/oauth2/`), `the provider's sign-in page, not ${page.url()}`);
  await signIn(page, env('MEMBER'));
  await page.waitForURL(`${BASE}/app/#/duties`, { timeout: 30000 });
  await page.waitForSelector('text=Nachtdienst Notruf');
  expect((await page.textContent('main')).includes('Confirmed'), 'the duty shows as confirmed');
  await axe(page, 'my duties');
  await page.screenshot({ path: `${SHOTS}/02-my-duties.png`, fullPage: true });
  await page.click('text=Nachtdienst Notruf');
  await page.waitForSelector('h1:has-text("Nachtdienst Notruf")');
  expect((await page.textContent('main')).includes('Wache Nord'), 'the duty page shows where');
  await page.screenshot({ path: `${SHOTS}/03-duty.png`, fullPage: true });

  step('the member signs up for an open duty of the team');
  await page.click('nav.tabs >> text=Duties');
  await page.waitForSelector('section[aria-labelledby=h-open] >> text=Tagdienst Markt');
  await page.click('section[aria-labelledby=h-open] >> text=Tagdienst Markt');
  await page.fill('#signup-note', 'Ab 9 Uhr');
  await page.click('form:has(#signup-note) button[type=submit]');
  await page.waitForSelector('text=Your request was sent.');
  await page.click('nav.tabs >> text=Duties');
  await page.waitForSelector('section[aria-labelledby=h-up] >> text=Tagdienst Markt');
  expect((await page.textContent('section[aria-labelledby=h-up]')).includes('Requested'), 'the request shows as requested');

  step('the contacts are on the device and searchable as one types');
  await page.click('nav.tabs >> text=Contacts');
  await page.waitForSelector('#contact-q');
  const count = await page.textContent('#contact-count');
  expect(count.includes(env('CONTACTS')), `all ${env('CONTACTS')} visible contacts are kept (${count})`);
  await page.evaluate(() => performance.clearMeasures('contacts-search'));
  await page.focus('#contact-q');
  await page.keyboard.type(env('COLLEAGUE'), { delay: 40 });
  await page.waitForSelector(`#contact-results >> text=${env('COLLEAGUE')}`);
  const times = await page.evaluate(() => performance.getEntriesByName('contacts-search').map((e) => e.duration));
  times.sort((a, b) => a - b);
  console.log(
    `search: ${times.length} keystrokes over ${env('CONTACTS')} contacts, median ${times[Math.floor(times.length / 2)].toFixed(2)} ms, max ${times[times.length - 1].toFixed(2)} ms`,
  );
  // A figure, not a pass mark: timings under a loaded test run say little (the issue's
  // 16 ms floor is checked on a quiet machine and reported).
  expect(times.length >= env('COLLEAGUE').length, 'one search per keystroke');
  await axe(page, 'contacts');
  await page.screenshot({ path: `${SHOTS}/04-contacts.png`, fullPage: true });

  step('offline: the app opens from the service worker and still finds the colleague');
  await page.waitForFunction(() => navigator.serviceWorker.controller !== null, null, { timeout: 15000 });
  await member.setOffline(true);
  await page.goto(`${BASE}/app/#/contacts`);
  await page.waitForSelector('#contact-q');
  await page.waitForSelector('.offline:not([hidden])');
  await page.fill('#contact-q', 'brunner');
  await page.click(`#contact-results >> text=${env('COLLEAGUE')}`);
  await page.waitForSelector('h1:has-text("Bea Brunner")');
  expect((await page.textContent('main')).includes(env('COLLEAGUE_PHONE')), "the colleague's phone number, offline");
  await axe(page, 'contact (offline)');
  await page.screenshot({ path: `${SHOTS}/05-contact-offline.png`, fullPage: true });
  await member.setOffline(false);

  step('with the directory switched off the app offers no contacts; on again, they come back');
  expect((await request('DIRECTORY off')) === 'ok', 'the directory switched off');
  await page.goto(`${BASE}/app/#/duties`);
  await page.reload();
  await page.waitForSelector('nav.tabs >> text=Duties');
  await page.waitForFunction(() => ![...document.querySelectorAll('nav.tabs a')].some((a) => a.getAttribute('href') === '#/contacts'), null, { timeout: 15000 });
  await page.goto(`${BASE}/app/#/contacts`);
  await page.waitForFunction(() => location.hash !== '#/contacts', null, { timeout: 15000 });
  expect((await request('DIRECTORY on')) === 'ok', 'the directory switched on');
  await page.reload();
  await page.waitForSelector('nav.tabs >> text=Contacts');
  await page.click('nav.tabs >> text=Contacts');
  await page.waitForFunction((n) => (document.querySelector('#contact-count')?.textContent ?? '').includes(n), env('CONTACTS'), { timeout: 60000 });

  step('sign-out wipes what the device keeps');
  const before = await storedContacts(page);
  expect(before.contacts >= Number(env('CONTACTS')) && before.session, `the device kept the contacts (${JSON.stringify(before)})`);
  await page.goto(`${BASE}/app/#/account`);
  await page.waitForSelector('#sign-out');
  await axe(page, 'account');
  await Promise.all([page.waitForURL(`${BASE}/app/`), page.click('#sign-out')]);
  await page.waitForSelector('#org-q');
  const after = await storedContacts(page);
  expect(after.contacts === 0 && !after.session, `nothing left after sign-out (${JSON.stringify(after)})`);
  await member.close();

  // ---- a relative ----------------------------------------------------------------------------
  const relative = await browser.newContext({ locale: 'de-CH', viewport: { width: 390, height: 844 } });
  capture(relative);
  const rp = await relative.newPage();
  watch(rp, errors);
  step('a relative signs in with password and SMS code');
  await rp.goto(`${BASE}/app/?org=acme`);
  await rp.waitForURL(/\/oauth2\//);
  await signIn(rp, env('RELATIVE'));
  await rp.waitForURL(/\/app\/#\//, { timeout: 30000 });
  await rp.goto(`${BASE}/app/#/care`);
  await rp.waitForSelector('#visits >> text=Grundpflege');
  const visits = await rp.textContent('#visits');
  expect(visits.includes('Besuch von Petra'), `who is coming (${visits})`);
  expect(visits.includes('Hauswirtschaft'), 'both visits');
  await axe(rp, 'appointments');
  await rp.screenshot({ path: `${SHOTS}/06-appointments.png`, fullPage: true });

  step('the relative asks to cancel a visit');
  const second = rp.locator('#visits > li', { hasText: 'Hauswirtschaft' });
  await second.locator('button', { hasText: 'Absage anfragen' }).click();
  await second.locator('textarea').fill('Wir sind an dem Tag verreist.');
  await second.locator('button[type=submit]').click();
  await rp.waitForSelector('text=Deine Anfrage wurde gesendet');
  expect((await rp.locator('#visits > li', { hasText: 'Hauswirtschaft' }).textContent()).includes('Anfrage offen'), 'the visit shows the open request');

  step('the relative writes to the organisation');
  await rp.fill('#msg-subject', 'Schlüssel');
  await rp.fill('#msg-body', 'Der Schlüssel liegt beim Nachbarn.');
  await rp.click('form:has(#msg-subject) button[type=submit]');
  await rp.waitForSelector('.messages >> text=Schlüssel');

  step('the relative makes a calendar link');
  await rp.click('text=Kalender-Link erstellen');
  await rp.waitForSelector('#calendar-link');
  expect((await rp.textContent('#calendar-link')).includes('/portal/v1/calendar/'), 'the subscription URL');
  await axe(rp, 'appointments with forms');
  await rp.screenshot({ path: `${SHOTS}/07-request-message-calendar.png`, fullPage: true });
  await relative.close();

  step('no credential ever went to discovery or settings');
  const all = await Promise.all(requests);
  const discovery = all.filter((r) => new URL(r.url).pathname.startsWith('/discovery'));
  expect(discovery.length >= 4, `discovery was read (${discovery.length} requests)`);
  const leaked = discovery.filter((r) => r.auth !== null);
  expect(leaked.length === 0, `no Authorization header to discovery: ${JSON.stringify(leaked)}`);
  const api = all.filter((r) => new URL(r.url).pathname.startsWith('/api/v1/') || new URL(r.url).pathname.startsWith('/portal/v1/'));
  expect(api.length > 0 && api.every((r) => r.auth?.startsWith('Bearer ')), 'API and portal calls carry the token');
  console.log(`requests: ${all.length} in all, ${discovery.length} to discovery without a credential, ${api.length} API calls with a token`);

  expect(errors.length === 0, `no script errors: ${errors.join(' | ')}`);
  await finish(browser, null, errors);
} catch (e) {
  await finish(browser, e, errors);
}
