import { test, expect, hydrated, snapshot, signIn, ADMIN } from './fixtures';

// Names unique to this run: the suite can run again on the same server.
const RUN = Date.now().toString(36);

test('failed sign-ins open an alert that appears in the open inbox without a reload, with a toast, and is acknowledged and resolved', async ({ page, baseURL, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/alerts');
  await hydrated(page);
  await expect(page.getByTestId('alerts-live')).toHaveText('live');

  // An application reports six failed sign-ins of one account.
  const actor = `mallory_${RUN}`;
  for (let i = 0; i < 6; i++) {
    const res = await page.request.post('/api/audit/events', {
      data: {
        occurred_at: new Date().toISOString(), category: 'authentication', action: 'user.login', outcome: 'failure',
        actor: { id: actor, kind: 'user', ip: '198.51.100.9' }, source: { application: 'portal', channel: 'ui' },
      },
      headers: { origin: new URL(baseURL!).origin },
    });
    expect(res.status(), await res.text()).toBe(201);
  }

  // The brute-force rule opens one alert; the page shows it live, and a
  // toast says so.
  const alert = page.getByTestId('alert').filter({ hasText: actor });
  await expect(alert).toHaveCount(1);
  await expect(alert).toHaveAttribute('data-rule', 'brute_force');
  await expect(alert.getByTestId('alert-status')).toHaveText('open');
  await expect(alert.getByTestId('alert-matches')).toHaveText('6 matches');
  await expect(page.getByTestId('alert-toast').first()).toContainText('New alert');
  await snapshot(page, 'alerts-inbox-open');

  // Its events, in the explorer.
  const href = await alert.getByTestId('alert-events').getAttribute('href');
  expect(href).toContain(`actor=${actor}`);
  expect(href).toContain('action=user.login');

  // Acknowledged with a comment: it leaves the open tab.
  await alert.getByTestId('alert-comment').fill('calling the account owner');
  await alert.getByTestId('acknowledge').click();
  await expect(alert).toHaveCount(0);
  await page.goto('/alerts?status=acknowledged');
  await hydrated(page);
  const acked = page.getByTestId('alert').filter({ hasText: actor });
  await expect(acked.getByTestId('alert-status')).toHaveText('acknowledged');
  await expect(acked.getByTestId('alert-history')).toContainText('calling the account owner');

  // Resolved; the step is in the ledger like the others.
  await acked.getByTestId('resolve').click();
  await expect(acked).toHaveCount(0);
  await page.goto('/alerts?status=resolved');
  await hydrated(page);
  await expect(page.getByTestId('alert').filter({ hasText: actor }).getByTestId('alert-history')).toContainText('resolved');
  await snapshot(page, 'alerts-inbox-resolved');
  const steps = await page.request.get('/api/audit?action=custos.alert.*&limit=50');
  const actions = (await steps.json()).items.map((e: { action: string }) => e.action);
  expect(actions).toEqual(expect.arrayContaining(['custos.alert.opened', 'custos.alert.acknowledged', 'custos.alert.resolved']));
  expect(consoleErrors).toEqual([]);
});
