import { test, expect, expectStatus, hydrated, snapshot, signIn, ADMIN } from './fixtures';

test('the home page asks to sign in, then loads, hydrates and shows the server status', async ({ page, request, consoleErrors }) => {
  const ready = await (await request.get('/readyz')).json();
  expect(ready.status).toBe('ready');

  await page.goto('/');
  await expect(page).toHaveURL(/\/login\?next=%2F|\/login\?next=\//);
  await signIn(page, ADMIN.username, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  await hydrated(page);
  await expect(page).toHaveTitle('Overview · Custos');
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();

  // The numbers come from the server, not from the page.
  await expect(page.getByTestId('database')).toHaveText(ready.database);
  await expect(page.getByTestId('version')).toHaveText(/^\d+\.\d+\.\d+$/);
  // Start-up and sign-ins are recorded, so the ledger is never empty here,
  // and a checkpoint signs it within a second or two.
  await expect(page.getByTestId('ledger-entries')).toHaveText(/^[1-9]\d*$/);
  await expect(page.getByTestId('checkpoint')).toHaveText(/^\d+ entries, signed \d{4}-\d\d-\d\dT/, { timeout: 15_000 });

  // After hydration the status refreshes itself: the uptime moves on.
  const before = await page.getByTestId('uptime').textContent();
  await expect(page.getByTestId('uptime')).not.toHaveText(before ?? '', { timeout: 15_000 });
  await snapshot(page, 'home');
  expect(consoleErrors).toEqual([]);
});

test('navigation shows what an administrator may open, and unknown pages say so', async ({ page, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await hydrated(page);
  const nav = page.getByRole('navigation', { name: 'Main' });
  // "Alerts" carries the number of open alerts, when there are any.
  await expect(nav.getByRole('link')).toHaveText(['Overview', 'Events', 'Analytics', /^Alerts( \d+)?$/, 'Compliance', 'Reports', 'Integrity', 'Policies', 'Notifications', 'Forwarding', 'Retention', 'Backups', 'Users', 'Roles', 'API keys']);

  await nav.getByRole('link', { name: 'Roles' }).click();
  await expect(page).toHaveURL(/\/admin\/roles$/);
  await expect(page.locator('tr[data-role="compliance_officer"]')).toContainText('audit:export');
  await snapshot(page, 'roles');
  await nav.getByRole('link', { name: 'Overview' }).click();
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  await expect(nav.getByRole('link', { name: 'Overview' })).toHaveAttribute('aria-current', 'page');

  expectStatus(page, 404, '/no-such-page');
  const missing = await page.goto('/no-such-page');
  expect(missing?.status()).toBe(404);
  await hydrated(page);
  await expect(page.getByRole('heading', { name: 'Page not found' })).toBeVisible();
  expect(consoleErrors).toEqual([]);
});

test('health, readiness and metrics answer', async ({ request }) => {
  const health = await request.get('/healthz');
  expect(health.status()).toBe(200);
  expect(health.headers()['x-request-id']).toBeTruthy();
  const metrics = await (await request.get('/metrics')).text();
  expect(metrics).toContain('custos_http_requests_total');
});
