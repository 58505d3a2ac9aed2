// The explorer's load in Chromium, as a person signed in meets it: first
// contentful paint, hydration (from then on the page answers input: our
// time to interactive), the first result rows, the result count, and the
// histogram drawn with its count. Measured on two running servers in the
// same run, taking turns: the seeded ledger and, as the baseline, a new
// ledger of 1,000 events. Each page is /events over the last day of the
// events its ledger holds (from and to given, so that a seed made days ago
// is not measured on the empty days since).
//
//   node scripts/bench-ui.mjs <seeded /events URL> <baseline /events URL> <entries> [runs]
//
// Credentials of a user who may read events on both: BENCH_UI_USER and
// BENCH_UI_PASSWORD. Each load opens a new browser context (no cookies),
// signs in through the form, then loads the page; the first load of each
// server is a warm-up and not counted. Milestones are taken in the page by
// a MutationObserver (performance.now(), from the navigation's start).
// With BENCH_RESULTS set, rows for `make bench`'s table are appended.

import { chromium } from '@playwright/test';
import { appendFileSync } from 'node:fs';

const [seeded, baseline, entries, runsArg] = process.argv.slice(2);
if (!seeded || !baseline || !entries) {
  console.error('usage: node scripts/bench-ui.mjs <seeded /events URL> <baseline /events URL> <entries> [runs]');
  process.exit(2);
}
const runs = Number(runsArg ?? 10);
const user = process.env.BENCH_UI_USER;
const password = process.env.BENCH_UI_PASSWORD;
if (!user || !password) {
  console.error('set BENCH_UI_USER and BENCH_UI_PASSWORD');
  process.exit(2);
}

const observer = () => {
  const marks = {};
  window.__custosPerf = marks;
  const check = () => {
    const now = performance.now();
    if (!('hydrated' in marks) && document.querySelector('body[data-hydrated="true"]')) marks.hydrated = now;
    if (!('rows' in marks) && document.querySelector('[data-testid="event-row"]')) marks.rows = now;
    const h = document.querySelector('[data-testid="histogram"]');
    if (!('histogram' in marks) && h && h.textContent.includes('matching') && document.querySelector('#histogram-chart canvas')) {
      marks.histogram = now;
    }
    const c = document.querySelector('[data-testid="result-count"]');
    if (!('count' in marks) && c && /\d/.test(c.textContent)) marks.count = now;
  };
  new MutationObserver(check).observe(document, { subtree: true, childList: true, attributes: true, characterData: true });
};

async function once(browser, url) {
  const base = new URL(url).origin;
  const context = await browser.newContext({ baseURL: base, viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(String(e)));
  await page.goto('/login');
  await page.getByLabel('User name').fill(user);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForURL((u) => !u.pathname.startsWith('/login'), { timeout: 30_000 });
  await page.addInitScript(observer);
  await page.goto(url);
  try {
    await page.waitForFunction(
      () => ['hydrated', 'rows', 'histogram', 'count'].every((k) => k in (window.__custosPerf ?? {})),
      null,
      { timeout: 120_000, polling: 50 },
    );
  } catch (e) {
    const seen = await page.evaluate(() => JSON.stringify(window.__custosPerf ?? null)).catch(() => '?');
    const shot = `target/bench-ui-timeout-${Date.now()}.png`;
    await page.screenshot({ path: shot, fullPage: true }).catch(() => {});
    throw new Error(`${url}: not every milestone within 120 s (seen: ${seen}; screenshot ${shot}): ${e.message}`);
  }
  const m = await page.evaluate(() => {
    const nav = performance.getEntriesByType('navigation')[0];
    const fcp = performance.getEntriesByName('first-contentful-paint')[0];
    return { ttfb: nav.responseStart, fcp: fcp ? fcp.startTime : NaN, ...window.__custosPerf };
  });
  if (errors.length) throw new Error(`page errors on ${base}: ${errors.join('; ')}`);
  await context.close();
  return m;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const worst = (xs) => Math.max(...xs);

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM_PATH ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--headless', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'],
});
const [a, b] = [[], []];
try {
  // Interleaved, so that neither server has a quieter machine to itself.
  for (let i = 0; i <= runs; i++) {
    const [mb, ma] = [await once(browser, baseline), await once(browser, seeded)];
    if (i > 0) {
      b.push(mb);
      a.push(ma);
    }
  }
} finally {
  await browser.close();
}

const n = Number(entries).toLocaleString('en');
const measures = [
  ['ttfb', 'server answer (first byte)'],
  ['fcp', 'first contentful paint'],
  ['hydrated', 'time to interactive (hydrated)'],
  ['rows', 'first result rows shown'],
  ['count', 'result count shown'],
  ['histogram', 'histogram drawn'],
];
console.log(`| /events, last day of events, ${runs} loads each (median / slowest) | ${n} entries | 1,000 entries (baseline) | ratio of medians |`);
console.log('|---|---:|---:|---:|');
for (const [k, label] of measures) {
  const [va, vb] = [a.map((s) => s[k]), b.map((s) => s[k])];
  const [ma, mb] = [median(va), median(vb)];
  console.log(`| ${label} | ${ma.toFixed(0)} / ${worst(va).toFixed(0)} ms | ${mb.toFixed(0)} / ${worst(vb).toFixed(0)} ms | ${(ma / mb).toFixed(2)} |`);
  const out = process.env.BENCH_RESULTS;
  if (out && k !== 'ttfb' && k !== 'count') {
    const row = {
      measure: `Explorer ${label}, median of ${runs} loads (${n} entries, SQLite)`,
      value: ma,
      unit: 'ms',
      baseline: mb,
      baseline_is: 'the same page on a ledger of 1,000 events',
      ratio: ma / mb,
      aim: null,
      met: null,
    };
    appendFileSync(out, JSON.stringify(row) + '\n');
  }
}
