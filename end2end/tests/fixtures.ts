import { test as base, expect, Page } from '@playwright/test';
import * as path from 'path';

// Every test fails if the page logs a console error or throws. A test that
// loads a missing page on purpose calls `expectStatus(page, 404, url)` first.
export const test = base.extend<{ consoleErrors: string[] }>({
  consoleErrors: async ({ page }, use) => {
    const errors: string[] = [];
    const expected: { status: number; url: string }[] = [];
    expectations.set(page, expected);
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const where = msg.location().url;
      const allowed = expected.some(
        (e) => where.endsWith(e.url) && msg.text().includes(`status of ${e.status}`),
      );
      if (!allowed) errors.push(`${msg.text()} (${where})`);
    });
    page.on('pageerror', (err) => errors.push(String(err)));
    await use(errors);
    expect(errors, 'browser console errors').toEqual([]);
  },
});

export { expect };

const expectations = new WeakMap<Page, { status: number; url: string }[]>();

/** Declares that the browser will log `status` for `url` (a page loaded on purpose). */
export function expectStatus(page: Page, status: number, url: string) {
  expectations.get(page)?.push({ status, url });
}

/** Waits until the WASM bundle has hydrated the server-rendered page. */
export async function hydrated(page: Page) {
  await expect(page.locator('body[data-hydrated="true"]')).toHaveCount(1);
}

/** Saves a screenshot under target/e2e-screenshots for people to look at. */
export async function snapshot(page: Page, name: string) {
  await page.screenshot({ path: path.join(__dirname, '..', '..', 'target', 'e2e-screenshots', `${name}.png`), fullPage: true });
}
