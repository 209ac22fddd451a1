// What the app's browser runs share: environment, steps and checks, the line protocol with
// the Rust test (requests on standard output, answers on standard input), Chromium, axe-core
// under the app's own CSP, and the failure report.

import { chromium } from 'playwright-core';
import { createRequire } from 'node:module';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const require = createRequire(import.meta.url);
const axeSource = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

export const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`${k} is not set`);
  return v;
};

let current = 'start';
export const step = (s) => {
  current = s;
  console.log(`step: ${s}`);
};
export const expect = (ok, what) => {
  if (!ok) throw new Error(`expected: ${what}`);
};

const stdinLines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
/** Prints `request` for the Rust test and returns its one-line answer. */
export async function request(line) {
  console.log(line);
  const { value } = await stdinLines.next();
  return (value ?? '').trim();
}

export const launch = () =>
  chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });

/** axe-core's WCAG 2.1 A/AA rules on the page, evaluated through the DevTools protocol (which
 * the page's CSP does not govern). */
export async function axe(page, name) {
  await page.evaluate(axeSource);
  const r = await page.evaluate(async () =>
    // eslint-disable-next-line no-undef
    window.axe.run(document, { runOnly: { type: 'tag', values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'] } }),
  );
  if (r.violations.length > 0) {
    const v = r.violations.map((x) => ({ id: x.id, help: x.help, nodes: x.nodes.map((n) => n.target) }));
    throw new Error(`axe-core on ${name}: ${JSON.stringify(v)}`);
  }
  console.log(`axe: ${name} ok (${r.passes.length} rules passed)`);
}

/** Collects the page's script errors into `errors`. */
export function watch(page, errors) {
  page.on('console', (m) => {
    if (m.type() === 'error' && !m.text().includes('Failed to load resource')) errors.push(m.text());
  });
  page.on('pageerror', (e) => errors.push(String(e)));
}

/** The end of a run: "ok", or the failing step with every open page's text and a screenshot. */
export async function finish(browser, error, errors) {
  if (!error) {
    await browser.close();
    console.log('ok');
    process.exit(0);
  }
  console.error(`failed at step "${current}": ${error.stack ?? error}`);
  for (const c of browser.contexts()) {
    for (const p of c.pages()) {
      console.error(`page ${p.url()}: ${(await p.textContent('body').catch(() => '')).slice(0, 2000)}`);
      await p.screenshot({ path: `${process.env.SHOTS}/failure.png`, fullPage: true }).catch(() => {});
    }
  }
  if (errors.length) console.error(`script errors: ${errors.join(' | ')}`);
  await browser.close().catch(() => {});
  process.exit(1);
}
