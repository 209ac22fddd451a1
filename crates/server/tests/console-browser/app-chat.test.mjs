// The duty chat in the app: Chromium (Playwright) as an MLS device (ts-mls) beside Rust
// devices (openmls) that the Rust test `app_chat_browser` drives. This script asks that test
// to act ("ASK <command> [text]" on standard output) and reads its answer ("ok …" or
// "fail …") from standard input. Environment: BASE, MEMBER, PASSWORD, DUTY, FILE (a PNG),
// SHOTS, CHROMIUM. Prints "ok" at the end; exits non-zero with the failing step otherwise.

import { axe, env, expect, finish, launch, request, step, watch } from './app-lib.mjs';

const BASE = env('BASE');
const DUTY = env('DUTY');

async function ask(cmd) {
  const value = await request(`ASK ${cmd}`);
  if (!value.startsWith('ok')) throw new Error(`${cmd}: ${value}`);
  return value.slice(2).trim();
}

const browser = await launch();
const errors = [];
const DEVICE_STORE = async (page) =>
  page.evaluate(
    () =>
      new Promise((resolve, reject) => {
        const r = indexedDB.open('carebridge', 1);
        r.onsuccess = () => {
          const tx = r.result.transaction('kv');
          const q = tx.objectStore('kv').getAllKeys();
          tx.oncomplete = () => {
            r.result.close();
            resolve(q.result.filter((k) => String(k).startsWith('chat.')));
          };
        };
        r.onerror = () => reject(r.error);
      }),
  );

async function member(login) {
  const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  watch(page, errors);
  page.on('console', (m) => {
    if (m.type() === 'warning') console.log(`browser warning (${login}): ${m.text()}`);
  });
  await page.goto(`${BASE}/app/?org=acme`);
  await page.waitForSelector('#login');
  await page.fill('#login', login);
  await page.fill('#password', env('PASSWORD'));
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  await page.waitForURL(/\/app\/#\/duties/, { timeout: 30000 });
  await page.click('text=Sanitätsdienst Stadtlauf');
  await page.click('#open-chat');
  await page.waitForSelector('#chat-state:has-text("Waiting")', { timeout: 30000 });
  return page;
}

/** Records when each line of `selector` first shows, by its text (page's clock). */
async function watchLines(page) {
  await page.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      for (const li of document.querySelectorAll('#chat-lines li.theirs')) {
        const t = li.querySelector('.body')?.textContent ?? '';
        if (t && !(t in window.__seen)) window.__seen[t] = Date.now();
      }
    }).observe(document.body, { childList: true, subtree: true });
  });
}

function figures(ms) {
  const v = [...ms].sort((a, b) => a - b);
  return `median ${v[Math.floor(v.length / 2)]} ms, max ${v[v.length - 1]} ms over ${v.length}`;
}

try {
  step('two members sign in and open the duty chat: each browser registers as a chat device');
  const page = await member(env('MEMBER'));
  const nora = await member(env('SECOND'));

  step("a Rust device commits the server's Adds; both browsers join from its Welcome");
  await ask('ben-commit');
  await page.waitForSelector('#chat-text:not([disabled])', { timeout: 15000 });
  await nora.waitForSelector('#chat-text:not([disabled])', { timeout: 15000 });

  step('browser → Rust device and the other browser');
  await watchLines(nora);
  await page.fill('#chat-text', 'Hallo aus dem Browser');
  await page.click('#chat-form button[type=submit]');
  await page.waitForSelector('#chat-lines li.mine:has-text("Hallo aus dem Browser")');
  await nora.waitForSelector('#chat-lines li.theirs:has-text("Hallo aus dem Browser")');
  await ask('ben-read Hallo aus dem Browser');

  step('Rust device → browser, live over the WebSocket');
  await watchLines(page);
  const sentAt = Number(await ask('ben-send Grüezi vom Terminal'));
  await page.waitForSelector('#chat-lines li.theirs:has-text("Grüezi vom Terminal")');
  const seenAt = await page.evaluate(() => window.__seen['Grüezi vom Terminal']);
  console.log(`latency: Rust device send → shown in the browser: ${seenAt - sentAt} ms`);
  await page.waitForSelector('#chat-lines li.theirs:has-text("Grüezi vom Terminal") .who:text-is("Ben Muster")');

  step('browser → browser, timed');
  const lat = [];
  for (let i = 1; i <= 20; i++) {
    const text = `Ping ${i}`;
    await page.fill('#chat-text', text);
    const t0 = await page.evaluate(() => {
      document.querySelector('#chat-form button[type=submit]').click();
      return Date.now();
    });
    await nora.waitForSelector(`#chat-lines li.theirs:has-text("${text}")`);
    const t1 = await nora.evaluate((t) => window.__seen[t], text);
    lat.push(t1 - t0);
    await page.waitForSelector(`#chat-lines li.mine:has-text("${text}")`);
  }
  console.log(`latency: browser send (click) → shown in the other browser: ${figures(lat)}`);

  step('an encrypted image from the browser to the Rust device');
  await page.setInputFiles('#chat-file', env('FILE'));
  await page.click('#chat-form button[type=submit]');
  await page.waitForSelector('#chat-lines li.mine .attachment');
  await ask('ben-read-file');

  step('an encrypted image from the Rust device, opened in the browser');
  await ask('ben-send-file');
  const theirs = await page.locator('#chat-lines li.theirs', { hasText: 'lageplan.png' }).elementHandle();
  await (await theirs.$('button')).click();
  const img = await theirs.waitForSelector('img.shot');
  await page.waitForFunction((i) => i.complete && i.naturalWidth === 192, img);

  step('the dispatcher adds Carl: the browsers race to commit the Add, his Rust device joins and writes');
  await ask('add-carl');
  await ask('carl-joined Carl ist dabei');
  await page.waitForSelector('#chat-lines li.theirs:has-text("Carl ist dabei")', { timeout: 15000 });
  await nora.waitForSelector('#chat-lines li.theirs:has-text("Carl ist dabei")', { timeout: 15000 });
  // Carl came later: his name is asked for when his first line arrives.
  await page.waitForSelector('#chat-lines li.theirs:has-text("Carl ist dabei") .who:text-is("Carl Muster")');
  await axe(page, 'duty chat');
  await page.screenshot({ path: `${env('SHOTS')}/08-duty-chat.png`, fullPage: true });

  step('two days after the duty the chat is read-only: reading works, writing does not');
  await ask('read-only');
  await page.goto(`${BASE}/app/#/duties`);
  await page.goto(`${BASE}/app/#/chat/${DUTY}`);
  await page.waitForSelector('#chat-state:has-text("Read-only")', { timeout: 15000 });
  expect(await page.locator('#chat-text').isDisabled(), 'no writing in a read-only chat');
  expect((await page.textContent('#chat-lines')).includes('Carl ist dabei'), 'the history is still readable');
  await page.screenshot({ path: `${env('SHOTS')}/09-duty-chat-read-only.png`, fullPage: true });

  step('the dispatcher removes Mia: the chat is gone for her browser');
  await ask('remove-mia');
  await page.goto(`${BASE}/app/#/duties`);
  await page.goto(`${BASE}/app/#/chat/${DUTY}`);
  await page.waitForSelector('#chat-state:has-text("no longer exists")', { timeout: 15000 });

  step("an admin removes Nora's device: her browser drops its chat keys");
  expect((await DEVICE_STORE(nora)).includes('chat.device'), 'Nora’s browser holds its device keys');
  await ask('remove-device');
  await nora.waitForSelector('#chat-state:has-text("removed")', { timeout: 20000 });
  const left = await DEVICE_STORE(nora);
  expect(!left.includes('chat.device') && !left.some((k) => k.startsWith('chat.group.')), `no chat keys left: ${left}`);
  expect((await ask('devices nora')) === '0', 'no device of Nora on the server');

  step('sign-out removes the chat device');
  await page.goto(`${BASE}/app/#/account`);
  await Promise.all([page.waitForURL(`${BASE}/app/`), page.click('#sign-out')]);
  expect((await ask('devices mia')) === '0', 'no chat device of Mia is left');

  expect(errors.length === 0, `no script errors: ${errors.join(' | ')}`);
  await finish(browser, null, errors);
} catch (e) {
  await finish(browser, e, errors);
}
