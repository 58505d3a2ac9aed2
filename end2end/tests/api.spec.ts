import { test, expect, snapshot } from './fixtures';

test('the API docs load offline from this server and list the audit API', async ({ page, request, consoleErrors, baseURL }) => {
  const origin = new URL(baseURL!).origin;
  const elsewhere: string[] = [];
  page.on('request', (r) => {
    const u = new URL(r.url());
    if (u.protocol !== 'data:' && u.origin !== origin) elsewhere.push(r.url());
  });

  const spec = await (await request.get('/api/openapi.json')).json();
  expect(spec.openapi).toMatch(/^3\.1/);

  await page.goto('/api/docs');
  await expect(page.getByText('Custos API', { exact: false }).first()).toBeVisible();
  const ingest = page.locator('.opblock-post', { hasText: '/api/audit/events' });
  await expect(ingest).toBeVisible();
  await expect(page.locator('.opblock-get', { hasText: '/api/audit/{id}' })).toBeVisible();
  await expect(page.locator('.opblock-post', { hasText: '/api/policies/{kind}/proposals' })).toBeVisible();

  // Open the ingest operation: its description and responses are there.
  await ingest.locator('.opblock-summary').click();
  await expect(ingest.getByText('stores nothing', { exact: false }).first()).toBeVisible();
  await expect(ingest.locator('.response-col_status', { hasText: '422' })).toBeVisible();
  await snapshot(page, 'api-docs');

  expect(elsewhere, 'nothing is fetched from another origin').toEqual([]);
  expect(consoleErrors).toEqual([]);
});
