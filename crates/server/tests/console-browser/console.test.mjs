// The admin console in a real browser: Debian's headless Chromium driven by Playwright
// (playwright-core, no downloaded browser), every main page checked with axe-core against
// WCAG 2.1 A/AA, screenshots saved. Started by the Rust test `console_browser`, which runs the
// server and passes: BASE, ADMIN_EMAIL, PASSWORD, PEOPLE (three family names, comma-separated),
// UNIT (the unit to create the duty in), SHOTS (screenshot folder), CHROMIUM (executable).
// Exits non-zero with the failing step on any failure.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const axePath = require.resolve('axe-core/axe.min.js');
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};
const BASE = env('BASE');
const SHOTS = env('SHOTS');
const PEOPLE = env('PEOPLE').split(',');

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
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
// The console's CSP allows no scripts at all; only axe, injected by this test, needs the bypass.
const context = await browser.newContext({
  bypassCSP: true,
  locale: 'en-GB',
  viewport: { width: 1280, height: 900 },
});
const page = await context.newPage();
const consoleErrors = [];
// Every answer of 400 or more, except the refused form's 422, is an error of the pages.
page.on('response', (r) => {
  if (r.status() >= 400 && r.status() !== 422) consoleErrors.push(`${r.status()} ${r.url()}`);
});
page.on('console', (m) => {
  if (m.type() === 'error' && !m.text().includes('Failed to load resource')) consoleErrors.push(m.text());
});

async function axe(name) {
  await page.addScriptTag({ path: axePath });
  const r = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    window.axe.run(document, {
      runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] },
    }),
  );
  if (r.violations.length > 0) {
    const v = r.violations.map((x) => ({ id: x.id, help: x.help, nodes: x.nodes.map((n) => n.target) }));
    throw new Error(`axe-core on ${name}: ${JSON.stringify(v)}`);
  }
  console.log(`axe: ${name} ok (${r.passes.length} rules passed)`);
}

async function shot(name) {
  await page.screenshot({ path: `${SHOTS}/${name}.png`, fullPage: true });
}

async function heading() {
  return (await page.locator('h1').first().textContent()).trim();
}

try {
  step('sign in through the OpenID provider');
  await page.goto(`${BASE}/console`);
  expect(page.url().includes('/oauth2/'), `the provider's page, got ${page.url()}`);
  await page.locator('input[name=login]').fill(env('ADMIN_EMAIL'));
  await page.locator('input[name=password]').fill(env('PASSWORD'));
  await Promise.all([page.waitForURL(/\/console$/), page.locator('button[type=submit]').first().click()]);
  expect((await heading()) === 'Welcome', 'the start page');
  await axe('home');
  await shot('home');

  step('keyboard: the first Tab reaches the skip link');
  await page.keyboard.press('Tab');
  const focused = await page.evaluate(() => document.activeElement?.textContent?.trim());
  expect(focused === 'Skip to content', `skip link focused, got ${focused}`);

  step('people list');
  await page.getByRole('link', { name: 'People', exact: true }).first().click();
  expect((await heading()) === 'People', 'the people page');
  await axe('people');
  await shot('people');

  step('create a person with a validation error first');
  await page.getByRole('link', { name: 'New person' }).click();
  await page.getByLabel('Given name').fill('Lea');
  await page.getByLabel('Family name').fill('Lehmann');
  await page.getByLabel('E-mail addresses').fill('not an address');
  await page.getByRole('button', { name: 'Save' }).click();
  expect(await page.locator('#form-errors').isVisible(), 'the form names the error');
  await axe('person form with errors');
  await shot('person-form-error');
  await page.getByLabel('E-mail addresses').fill('lea@example.org');
  await page.getByLabel('Phone numbers').fill('079 555 66 77');
  await page.getByRole('button', { name: 'Save' }).click();
  expect((await heading()) === 'Lea Lehmann', 'the new person page');
  expect((await page.content()).includes('+41795556677'), 'the phone in E.164');
  await axe('person');
  await shot('person');

  step('search');
  await page.getByRole('link', { name: 'People', exact: true }).first().click();
  await page.getByLabel('Search', { exact: true }).fill('lehm');
  await page.getByRole('button', { name: 'Search' }).click();
  expect(await page.getByRole('link', { name: 'Lehmann, Lea' }).isVisible(), 'found by prefix');

  step('import a CSV: the report first, then apply');
  await page.getByRole('link', { name: 'Import', exact: true }).first().click();
  await axe('import');
  const csv = 'Vorname;Nachname;E-Mail;Mobile\r\nIda;Imhof;ida@example.org;079 222 33 44\r\nOtto;Ohne;kaputt;\r\n';
  await page.getByLabel('File', { exact: true }).setInputFiles({ name: 'leute.csv', mimeType: 'text/csv', buffer: Buffer.from(csv) });
  await page.getByLabel('Apply the good rows even if some rows have errors').check();
  await page.getByRole('button', { name: 'Check the file' }).click();
  expect((await page.locator('#import-result').textContent()).includes('Nothing has been written yet.'), 'a dry run');
  expect(await page.locator('#row-errors').getByRole('cell', { name: 'kaputt', exact: true }).isVisible(), 'the bad row named');
  await axe('import report');
  await shot('import-report');
  await page.getByRole('button', { name: 'Apply' }).click();
  expect((await page.locator('#import-result').textContent()).includes('The import is applied.'), 'applied');
  await shot('import-applied');

  step('units');
  await page.getByRole('link', { name: 'Units', exact: true }).first().click();
  await axe('units');
  await shot('units');

  step('create a duty with the chat on');
  await page.getByRole('link', { name: 'Duties', exact: true }).first().click();
  await axe('duties');
  await page.getByRole('link', { name: 'New duty' }).click();
  await page.getByLabel('Title').fill('Sanitätsdienst Stadtlauf');
  await page.getByLabel('Unit').selectOption({ label: env('UNIT') });
  await page.getByLabel('Starts').fill('2026-12-05T08:00');
  await page.getByLabel('Ends').fill('2026-12-05T14:00');
  await page.getByLabel('Time zone').fill('Europe/Zurich');
  await page.getByLabel('Duty chat for everyone on the roster').check();
  await page.getByRole('button', { name: 'Create' }).click();
  expect((await heading()) === 'Sanitätsdienst Stadtlauf', 'the duty page');

  step('assign three people');
  for (const name of PEOPLE) {
    await page.getByLabel('Find a person to assign').fill(name);
    await page.getByRole('button', { name: 'Search' }).click();
    const assign = page.getByRole('button', { name: new RegExp(`^Assign: .*${name}`) });
    expect((await assign.count()) === 1, `one candidate ${name}`);
    await assign.click();
    expect(await page.locator('#roster').getByText(name).isVisible(), `${name} on the roster`);
  }
  expect((await page.content()).includes('Usable until'), 'the chat state');
  await axe('duty');
  await shot('duty');

  step('change the roster');
  await page.getByRole('button', { name: new RegExp(`^Remove: .*${PEOPLE[0]}`) }).click();
  expect((await page.locator('#roster').getByText(PEOPLE[0]).count()) === 0, `${PEOPLE[0]} removed`);
  expect(await page.locator('#roster').getByText(PEOPLE[1]).isVisible(), 'the others stay');

  step('revoke a device');
  await page.getByRole('link', { name: 'People', exact: true }).first().click();
  await page.getByLabel('Search', { exact: true }).fill(PEOPLE[0]);
  await page.getByRole('button', { name: 'Search' }).click();
  await page.getByRole('link', { name: new RegExp(`^${PEOPLE[0]}, `) }).click();
  await axe('person with a device');
  await page.getByRole('button', { name: 'Remove: Annas Telefon' }).click();
  expect((await page.content()).includes('The device is removed from every chat.'), 'the device is gone');
  expect((await page.locator('#devices').count()) === 0, 'no devices left');

  step('the week view');
  await page.goto(`${BASE}/console/duties?view=week&from=2026-12-01`);
  expect(await page.locator('#day-2026-12-05').isVisible(), 'the day column');
  expect((await page.content()).includes('Sanitätsdienst Stadtlauf'), 'the duty in its week');
  await axe('week');
  await shot('week');

  step('audit log');
  await page.getByRole('link', { name: 'Audit log', exact: true }).first().click();
  expect((await page.content()).includes('assignment'), 'assignments in the log');
  await page.getByRole('link', { name: 'Verify the audit chain' }).click();
  expect((await page.content()).includes('The audit chain is intact'), 'the chain verifies');
  await axe('audit');
  await shot('audit');

  step('settings and the discovery preview');
  await page.getByRole('link', { name: 'Settings', exact: true }).first().click();
  expect(await page.locator('#discovery').isVisible(), 'what apps receive');
  await axe('settings');
  await shot('settings');

  step('integrations');
  await page.getByRole('link', { name: 'Integrations', exact: true }).first().click();
  expect(await page.locator('#scim-url').isVisible(), 'the SCIM tenant URL');
  await axe('integrations');
  await shot('integrations');

  step('the portal page (requests, messages, links)');
  await page.getByRole('link', { name: 'Portal', exact: true }).first().click();
  expect((await heading()) === 'Portal', 'the portal page');
  await axe('portal');
  await shot('portal');

  step('access rights');
  await page.getByRole('link', { name: 'Access rights', exact: true }).first().click();
  await axe('access rights');

  step('a phone screen');
  await page.setViewportSize({ width: 390, height: 844 });
  await page.getByRole('link', { name: 'People', exact: true }).first().click();
  const overflow = await page.evaluate(() => document.body.scrollWidth - window.innerWidth);
  expect(overflow <= 1, `no sideways scrolling of the page on a phone (${overflow}px)`);
  await shot('people-phone');

  step('German');
  await page.getByLabel('Language').selectOption('de');
  await page.getByRole('button', { name: 'Language' }).click();
  expect((await heading()) === 'Personen', 'the page in German');
  await axe('people (de)');

  step('sign out');
  await page.getByRole('button', { name: 'Abmelden' }).click();
  await page.goto(`${BASE}/console/people`);
  expect(page.url().includes('/oauth2/'), 'signed out: back at the sign-in');

  expect(consoleErrors.length === 0, `no errors in the browser console: ${consoleErrors.join(' | ')}`);
  console.log('ok');
} catch (e) {
  console.error(`FAILED at step "${current}": ${e.message}`);
  try {
    await shot('failure');
  } catch {
    // the page may be gone
  }
  await browser.close();
  process.exit(1);
}
await browser.close();
