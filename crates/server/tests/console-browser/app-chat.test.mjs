// The duty chat in the app: Chromium (Playwright) as an MLS device (ts-mls) beside Rust
// devices (openmls) that the Rust test `app_chat_browser` drives. This script asks that test
// to act ("ASK <command> [text]" on standard output) and reads its answer ("ok …" or
// "fail …") from standard input. Environment: BASE, MEMBER, PASSWORD, DUTY, FILE (a PNG),
// SHOTS, CHROMIUM. Prints "ok" at the end; exits non-zero with the failing step otherwise.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('BASE');
const DUTY = env('DUTY');

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
async function ask(cmd) {
  console.log(`ASK ${cmd}`);
  const { value } = await stdinLines.next();
  if (!value.startsWith('ok')) throw new Error(`${cmd}: ${value}`);
  return value.slice(2).trim();
}

let current = 'start';
const step = (s) => {
  current = s;
  console.log(`step: ${s}`);
};
const expect = (ok, what) => {
  if (!ok) throw new Error(`expected: ${what}`);
};

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const errors = [];
try {
  const context = await browser.newContext({ locale: 'en-GB', viewport: { width: 390, height: 844 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => errors.push(String(e)));
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().includes('Failed to load resource')) errors.push(m.text());
    if (m.type() === 'warning') console.log(`browser warning: ${m.text()}`);
  });

  step('sign in and open the duty chat: the browser registers as a chat device');
  await page.goto(`${BASE}/app/?org=acme`);
  await page.waitForSelector('#login');
  await page.fill('#login', env('MEMBER'));
  await page.fill('#password', env('PASSWORD'));
  await Promise.all([page.waitForNavigation(), page.click('button[type=submit]')]);
  await page.waitForURL(/\/app\/#\/duties/, { timeout: 30000 });
  await page.click('text=Sanitätsdienst Stadtlauf');
  await page.click('#open-chat');
  await page.waitForSelector('#chat-state:has-text("Waiting")', { timeout: 30000 });

  step("a Rust device commits the server's Add; the browser joins from its Welcome");
  await ask('ben-commit');
  await page.waitForSelector('#chat-text:not([disabled])', { timeout: 15000 });

  step('browser → Rust device');
  await page.fill('#chat-text', 'Hallo aus dem Browser');
  await page.click('#chat-form button[type=submit]');
  await page.waitForSelector('#chat-lines li.mine:has-text("Hallo aus dem Browser")');
  await ask('ben-read Hallo aus dem Browser');

  step('Rust device → browser, live over the WebSocket');
  await page.evaluate(() => {
    window.__seen = {};
    new MutationObserver(() => {
      for (const li of document.querySelectorAll('#chat-lines li.theirs')) {
        const t = li.textContent;
        if (!(t in window.__seen)) window.__seen[t] = Date.now();
      }
    }).observe(document.body, { childList: true, subtree: true });
  });
  const sentAt = Number(await ask('ben-send Grüezi vom Terminal'));
  await page.waitForSelector('#chat-lines li.theirs:has-text("Grüezi vom Terminal")');
  const seenAt = await page.evaluate(() => Object.entries(window.__seen).find(([t]) => t.includes('Grüezi vom Terminal'))[1]);
  console.log(`latency: Rust device send → shown in the browser: ${seenAt - sentAt} ms`);

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

  step('the dispatcher adds Carl: the browser commits the Add, his Rust device joins and writes');
  await ask('add-carl');
  await ask('carl-joined Carl ist dabei');
  await page.waitForSelector('#chat-lines li.theirs:has-text("Carl ist dabei")', { timeout: 15000 });
  await page.evaluate(axeSource);
  const a = await page.evaluate(async () => window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }));
  expect(a.violations.length === 0, `axe-core on the chat: ${JSON.stringify(a.violations.map((v) => [v.id, v.nodes.map((n) => n.target)]))}`);
  await page.screenshot({ path: `${env('SHOTS')}/08-duty-chat.png`, fullPage: true });

  step('the dispatcher removes Mia: the chat is gone for this browser');
  await ask('remove-mia Nach Mias Abmeldung');
  await page.goto(`${BASE}/app/#/duties`);
  await page.goto(`${BASE}/app/#/chat/${DUTY}`);
  await page.waitForSelector('#chat-state:has-text("no longer exists")', { timeout: 15000 });
  expect(!(await page.textContent('main')).includes('Nach Mias Abmeldung'), 'nothing after the removal');

  step('sign-out removes the chat device');
  await page.goto(`${BASE}/app/#/account`);
  await Promise.all([page.waitForURL(`${BASE}/app/`), page.click('#sign-out')]);
  expect((await ask('devices')) === '0', 'no chat device of Mia is left');

  expect(errors.length === 0, `no script errors: ${errors.join(' | ')}`);
  await browser.close();
  console.log('ok');
  process.exit(0);
} catch (e) {
  console.error(`failed at step "${current}": ${e.stack ?? e}`);
  for (const c of browser.contexts()) {
    for (const p of c.pages()) {
      console.error(`page ${p.url()}: ${(await p.textContent('body').catch(() => '')).slice(0, 2000)}`);
      await p.screenshot({ path: `${process.env.SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    }
  }
  await browser.close().catch(() => {});
  process.exit(1);
}
