import { test, expect, hydrated, snapshot, signIn, ADMIN, newUserPage, createUser, firstSignIn } from './fixtures';
import { Page } from '@playwright/test';

// Names unique to this run: the suite can run again on the same server.
const RUN = Date.now().toString(36);

/** A failed sign-in of `actor`, as an application reports it. */
function failedSignIn(actor: string) {
  return {
    occurred_at: new Date().toISOString(), category: 'authentication', action: 'user.login', outcome: 'failure',
    actor: { id: actor, kind: 'user', ip: '198.51.100.9' }, source: { application: 'portal', channel: 'ui' },
  };
}

/** Posts `data` (one event or a batch) and expects it stored. */
async function send(page: Page, baseURL: string, data: object) {
  const res = await page.request.post('/api/audit/events', { data, headers: { origin: new URL(baseURL).origin } });
  expect(res.status(), await res.text()).toBe(201);
}

/** `n` failed sign-ins of `actor` in one request (one batch, as an application sends them). */
async function failuresAtOnce(page: Page, baseURL: string, actor: string, n: number) {
  await send(page, baseURL, Array.from({ length: n }, () => failedSignIn(actor)));
}

/** `n` failed sign-ins of `actor`, one request each. */
async function failures(page: Page, baseURL: string, actor: string, n: number) {
  for (let i = 0; i < n; i++) {
    await send(page, baseURL, failedSignIn(actor));
  }
}

test('failed sign-ins open an alert that appears in the open inbox without a reload, with a toast, and is acknowledged and resolved', async ({ page, baseURL, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/alerts');
  await hydrated(page);
  await expect(page.getByTestId('alerts-live')).toHaveText('live');

  // An application reports six failed sign-ins of one account, in one
  // batch.
  const actor = `mallory_${RUN}`;
  await failuresAtOnce(page, baseURL!, actor, 6);

  // The brute-force rule opens one alert; the page shows it live, and a
  // toast says so.
  const alert = page.getByTestId('alert').filter({ hasText: actor });
  await expect(alert).toHaveCount(1);
  await expect(alert).toHaveAttribute('data-rule', 'brute_force');
  await expect(alert.getByTestId('alert-status')).toHaveText('open');
  await expect(alert.getByTestId('alert-matches')).toHaveText('6 matches');
  await expect(page.getByTestId('alert-toast').first()).toContainText('New alert');

  // While someone types a comment, two more failures arrive one by one:
  // each is counted into the open alert, and the count changes in place,
  // without a reload; the comment being typed stays, and so does focus.
  const box = alert.getByTestId('alert-comment');
  await box.click();
  await box.pressSequentially('calling the account');
  await failures(page, baseURL!, actor, 2);
  await expect(alert.getByTestId('alert-matches')).toHaveText('8 matches');
  await expect(box).toHaveValue('calling the account');
  await expect(box).toBeFocused();
  await box.pressSequentially(' owner');
  await snapshot(page, 'alerts-inbox-open');

  // Its events, in the explorer.
  const href = await alert.getByTestId('alert-events').getAttribute('href');
  expect(href).toContain(`actor=${actor}`);
  expect(href).toContain('action=user.login');

  // Acknowledged with that comment: it leaves the open tab.
  await expect(box).toHaveValue('calling the account owner');
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
  const resolved = page.getByTestId('alert').filter({ hasText: actor });
  await expect(resolved.getByTestId('alert-history')).toContainText('resolved');

  // A silence for this rule and account: listed, recorded, ended early.
  await resolved.getByTestId('alert-comment').fill(`password reset campaign (${RUN})`);
  await resolved.getByTestId('silence-hours').selectOption('1');
  await resolved.getByTestId('silence').click();
  const silence = page.getByTestId('silence-row').filter({ hasText: actor });
  await expect(silence).toHaveAttribute('data-active', 'true');
  await expect(silence).toContainText(`password reset campaign (${RUN})`);
  await snapshot(page, 'alerts-inbox-resolved');
  await silence.getByTestId('end-silence').click();
  await expect(silence).toContainText('ended early');
  const steps = await page.request.get('/api/audit?action=custos.alert.*&limit=50');
  const actions = (await steps.json()).items.map((e: { action: string }) => e.action);
  expect(actions).toEqual(expect.arrayContaining(['custos.alert.opened', 'custos.alert.acknowledged', 'custos.alert.resolved', 'custos.alert.silenced', 'custos.alert.unsilenced']));
  expect(consoleErrors).toEqual([]);
});

test('a threshold rule is made in the form, its dry-run counts past failures, and once approved it opens alerts live', async ({ page, browser, baseURL, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  const approverName = `rules_approver_${RUN}`;
  await createUser(page, approverName, 'approver initial 1', 'admin');
  const approver = await newUserPage(browser);
  await firstSignIn(approver, approverName, 'approver initial 1', 'approver chosen password');
  // History for the dry-run: six failures of one account.
  await failures(page, baseURL!, `history_${RUN}`, 6);

  await page.goto('/policies');
  await hydrated(page);
  await page.getByTestId('edit-alert_rules').click();
  await expect(page).toHaveURL(/\/policies\/alert_rules\/edit$/);
  await hydrated(page);
  await expect(page.locator('[data-testid="rule"][data-rule="brute_force"]')).toBeVisible();

  // 5 failed sign-ins per actor in 5 minutes, without writing JSON.
  const id = `failed_logins_${RUN}`;
  const name = `Five failed sign-ins per actor (${RUN})`;
  const form = page.getByTestId('rule-form');
  await form.getByTestId('rule-id').fill(id);
  await form.getByTestId('rule-name').fill(name);
  await form.getByTestId('rule-severity').selectOption('error');
  await form.getByTestId('rule-type').selectOption('threshold');
  await form.getByTestId('rule-actions').fill('user.login');
  await form.getByTestId('rule-outcomes').fill('failure');
  await form.getByTestId('rule-count').fill('5');
  await form.getByTestId('rule-window').fill('5');
  await form.getByTestId('rule-group-by').fill('actor');
  await form.getByTestId('rule-cooldown').fill('15');
  await form.getByTestId('save-rule').click();
  const row = page.locator(`[data-testid="rule"][data-rule="${id}"]`);
  await expect(row).toContainText('5 × user.login (failure) in 5 min per actor');

  // The dry-run beside it: the past failures would have opened an alert.
  const report = page.getByTestId('test-report');
  const line = report.locator('tr', { hasText: name });
  await expect(line).toBeVisible();
  expect(Number(await line.getByTestId('test-proposed').textContent())).toBeGreaterThanOrEqual(1);
  await snapshot(page, 'alert-rules-editor');

  // Submitted for review; a second admin approves.
  await page.getByTestId('reason').fill(`catch password guessing sooner (${RUN})`);
  await page.getByTestId('submit-proposal').click();
  await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  await approver.goto(page.url());
  await hydrated(approver);
  await approver.getByTestId('approve').click();
  await expect(approver.getByTestId('proposal-state')).toHaveText('approved');

  // In force within seconds: five failures open its alert in the inbox.
  await page.goto('/alerts');
  await hydrated(page);
  await expect(page.getByTestId('alerts-live')).toHaveText('live');
  const actor = `guesser_${RUN}`;
  await failures(page, baseURL!, actor, 5);
  const alert = page.locator(`[data-testid="alert"][data-rule="${id}"]`).filter({ hasText: actor });
  await expect(alert).toHaveCount(1, { timeout: 15_000 });
  await expect(alert.getByTestId('alert-rule')).toHaveText(name);
  expect(consoleErrors).toEqual([]);
});
