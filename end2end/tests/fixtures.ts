import { test as base, expect, Page, Browser } from '@playwright/test';
import * as crypto from 'crypto';
import * as path from 'path';

// Every test fails if the page logs a console error or throws. A test that
// loads a missing or forbidden page on purpose calls
// `expectStatus(page, status, url)` first.
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

/** The administrator the test run starts the server with. */
export const ADMIN = { username: 'admin', password: process.env.E2E_ADMIN_PASSWORD ?? 'e2e admin password' };

/** Signs in through the form (as a person would). */
export async function signIn(page: Page, username: string, password: string) {
  await page.goto('/login');
  await page.getByLabel('User name').fill(username);
  await page.getByLabel('Password').fill(password);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** A browser page of its own (separate cookies), for a second user. */
export async function newUserPage(browser: Browser): Promise<Page> {
  const context = await browser.newContext();
  return context.newPage();
}

/** An RFC 6238 TOTP code (SHA-1, 6 digits, 30 s) for a base32 secret at `unixSeconds`. */
export function totp(secretBase32: string, unixSeconds: number): string {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = 0;
  let value = 0;
  const bytes: number[] = [];
  for (const c of secretBase32.replace(/=+$/, '')) {
    value = (value << 5) | alphabet.indexOf(c);
    bits += 5;
    if (bits >= 8) {
      bits -= 8;
      bytes.push((value >>> bits) & 0xff);
    }
  }
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const mac = crypto.createHmac('sha1', Buffer.from(bytes)).update(counter).digest();
  const offset = mac[19] & 0x0f;
  const bin = ((mac[offset] & 0x7f) << 24) | (mac[offset + 1] << 16) | (mac[offset + 2] << 8) | mac[offset + 3];
  return String(bin % 1_000_000).padStart(6, '0');
}

/** Creates a user through the admin page (the admin must be signed in on `page`). */
export async function createUser(page: Page, username: string, password: string, roles: string) {
  await page.goto('/admin/users');
  await hydrated(page);
  const form = page.getByTestId('create-user');
  await form.getByLabel('User name').fill(username);
  await form.getByLabel('Initial password').fill(password);
  await form.getByLabel('Roles (comma-separated)').fill(roles);
  await form.getByRole('button', { name: 'Add user' }).click();
  await expect(page.locator(`tr[data-user="${username}"]`)).toBeVisible();
}

/** Signs in as a user who must first change the password, and changes it. */
export async function firstSignIn(page: Page, username: string, initial: string, chosen: string) {
  await signIn(page, username, initial);
  await expect(page).toHaveURL(/\/account$/);
  await hydrated(page);
  await expect(page.getByTestId('must-change')).toBeVisible();
  await page.getByLabel('Current password').fill(initial);
  await page.getByLabel('New password (at least 12 characters)').fill(chosen);
  await page.getByRole('button', { name: 'Change password' }).click();
  await expect(page.getByTestId('password-changed')).toBeVisible();
}
