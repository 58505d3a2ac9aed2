import { test, expect, expectStatus, hydrated, snapshot, signIn, ADMIN, newUserPage, createUser, firstSignIn } from './fixtures';
import { APIRequestContext } from '@playwright/test';

// Names unique to this run: the suite can run again on the same server.
const RUN = Date.now().toString(36);

async function ingest(request: APIRequestContext, baseURL: string, note: string) {
  const res = await request.post('/api/audit/events', {
    data: {
      occurred_at: new Date(Date.now() - 30_000).toISOString(),
      category: 'admin', action: `e2e.policy.r${RUN}`, outcome: 'success', severity: 'info',
      actor: { id: 'crm-sync', kind: 'service' }, source: { application: 'crm', channel: 'api' },
      details: { note },
    },
    headers: { origin: new URL(baseURL).origin },
  });
  expect(res.status(), await res.text()).toBe(201);
  return (await res.json()).events[0];
}

test('a masking change is edited in a form, tested, approved by a second admin, takes effect, and its trail shows every step', async ({ page, browser, baseURL, consoleErrors }) => {
  // Admin A; admin B's account exists before A proposes (an account made
  // after a proposal cannot approve it).
  await signIn(page, ADMIN.username, ADMIN.password);
  const approver = `approver_${RUN}`;
  await createUser(page, approver, 'approver initial 1', 'admin');
  // An event with an e-mail address to test against.
  await ingest(page.request, baseURL!, 'reach me at carol.e2e@example.net');

  // A edits masking in the form: e-mail addresses redacted.
  await page.goto('/policies/masking/edit');
  await hydrated(page);
  const email = page.getByTestId('rule-email');
  await expect(email).toBeVisible();
  // Redact e-mail addresses (or, when an earlier run on this server did,
  // pseudonymize them again): the suite can run twice.
  const action = email.getByTestId('rule-action');
  const target = (await action.inputValue()) === 'redact' ? 'pseudonymize' : 'redact';
  await action.selectOption(target);
  await page.getByTestId('preview-input').fill('write to ada@example.org');
  await expect(page.getByTestId('preview-output')).toHaveText(target === 'redact' ? 'write to [email]' : /^write to pseu:[0-9a-f]+$/);

  // Tests it on recent events: the e-mail rule masks values there.
  await page.getByTestId('run-test').click();
  const report = page.getByTestId('test-report');
  await expect(report).toBeVisible();
  const emailRow = report.locator('tr', { hasText: `email: ${target}` });
  await expect(emailRow).toBeVisible();
  expect(Number(await emailRow.getByTestId('test-proposed').textContent())).toBeGreaterThan(0);
  await expect(report).not.toContainText('carol.e2e@example.net');
  await snapshot(page, 'policy-masking-editor');

  // Submits it for review with a reason.
  const reason = `e-mail addresses are not needed in clear (${RUN})`;
  await page.getByTestId('reason').fill(reason);
  await page.getByTestId('submit-proposal').click();
  await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  await hydrated(page);
  await expect(page.getByTestId('proposal-state')).toHaveText('pending');
  const proposalUrl = page.url();
  const id = proposalUrl.split('/').pop()!;

  // A cannot approve: the button is disabled and the server refuses anyway.
  await expect(page.getByTestId('approve')).toBeDisabled();
  const own = await page.request.post(`/api/policies/proposals/${id}/approve`, {
    data: { comment: 'mine' }, headers: { origin: new URL(baseURL!).origin },
  });
  expect(own.status()).toBe(403);
  await snapshot(page, 'policy-review-author');

  // Admin B: sees the badge, reads the diff, approves.
  const b = await newUserPage(browser);
  await firstSignIn(b, approver, 'approver initial 1', 'approver chosen password');
  await b.goto('/');
  await hydrated(b);
  await expect(b.getByTestId('policy-badge')).toBeVisible();
  await b.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: /Policies/ }).click();
  await expect(b).toHaveURL(/\/policies$/);
  await hydrated(b);
  await expect(b.getByTestId('kind-masking')).toContainText(reason);
  await snapshot(b, 'policy-overview-pending');
  await b.goto(proposalUrl);
  await hydrated(b);
  const diff = b.getByTestId('diff');
  await expect(diff).toBeVisible();
  await expect(diff.locator('td.added')).toContainText([target]);
  await expect(b.getByTestId('proposal-author')).toContainText(ADMIN.username);
  await snapshot(b, 'policy-review-diff');
  await b.getByTestId('comment').fill('agreed: redact them');
  await b.getByTestId('approve').click();
  await expect(b.getByTestId('proposal-state')).toHaveText('approved');
  await expect(b.getByTestId('decisions')).toContainText(approver);

  // An event ingested afterwards is masked by the new rule.
  const after = await ingest(page.request, baseURL!, 'reach me at dave.e2e@example.net');
  const read = await page.request.get(`/api/audit/${after.id}`);
  expect(read.status()).toBe(200);
  const note = (await read.json()).event.details.note;
  if (target === 'redact') expect(note).toBe('reach me at [email]');
  else expect(note).toMatch(/^reach me at pseu:[0-9a-f]+$/);

  // The trail shows every step with both names and the diff.
  await b.goto('/policies/trail?kind=masking');
  await hydrated(b);
  const trail = b.getByTestId('trail');
  await expect(trail).toBeVisible();
  const mine = trail.locator('[data-testid="trail-entry"]', { hasText: reason });
  await expect(mine.first()).toBeVisible();
  for (const step of ['proposed', 'tested', 'approved', 'activated']) {
    await expect(trail.locator(`[data-step="${step}"]`).first()).toBeVisible();
  }
  const activated = trail.locator('[data-step="activated"]').first();
  await expect(activated.getByTestId('trail-actor')).toHaveText(approver);
  await activated.locator('summary').first().click();
  await expect(activated.getByTestId('trail-approvers')).toContainText(approver);
  await expect(activated.getByTestId('trail-diff')).toContainText('/rules/');
  await activated.getByTestId('load-proof').click();
  await expect(activated.getByTestId('inclusion')).toHaveText('✓ yes');
  const proposed = trail.locator('[data-step="proposed"]', { hasText: reason }).first();
  await expect(proposed.getByTestId('trail-actor')).toHaveText(ADMIN.username);
  await expect(b).toHaveURL(/kind=masking/);
  await snapshot(b, 'policy-trail');

  // The policies page shows the new version and who approved it.
  await b.goto('/policies');
  await hydrated(b);
  await expect(b.getByTestId('kind-masking').getByTestId('active-approval')).toContainText(approver);
  await expect(b.getByTestId('kind-alert_rules')).toContainText('Alert rules');

  // The explorer hides Custos's own activity on request, remembered for this user.
  await b.goto('/events?category=policy&range=1h');
  await hydrated(b);
  const rows = b.getByTestId('event-row');
  await expect(rows.filter({ hasText: 'custos.policy.activated' }).first()).toBeVisible();
  await b.getByTestId('hide-own').check();
  await expect(rows.filter({ hasText: 'custos.policy.' })).toHaveCount(0);
  await b.reload();
  await hydrated(b);
  await expect(b.getByTestId('hide-own')).toBeChecked();
  await expect(rows.filter({ hasText: 'custos.policy.' })).toHaveCount(0);
  await snapshot(b, 'events-hide-own');

  // A viewer cannot open the editor (403), nor read policies.
  const viewerName = `viewer_pol_${RUN}`;
  await createUser(page, viewerName, 'viewer initial 12', 'viewer');
  const v = await newUserPage(browser);
  await firstSignIn(v, viewerName, 'viewer initial 12', 'viewer chosen password 2');
  const viewerErrors: string[] = [];
  v.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('status of 403')) viewerErrors.push(m.text()); });
  const denied = await v.goto('/policies/masking/edit');
  expect(denied?.status()).toBe(403);
  await expect(v.getByRole('heading', { name: 'Access denied' })).toBeVisible();
  expect((await v.request.get('/api/policies')).status()).toBe(403);
  expect(viewerErrors).toEqual([]);
  expect(consoleErrors).toEqual([]);
});

test('the author withdraws a proposal, and the trail records it', async ({ page, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/policies/masking/edit');
  await hydrated(page);
  // Turn the phone rule off (or on again, on a second run).
  const on = page.getByTestId('rule-phone').getByTestId('rule-enabled');
  await expect(on).toBeVisible();
  if (await on.isChecked()) await on.uncheck(); else await on.check();
  const reason = `a change not needed after all (${RUN})`;
  await page.getByTestId('reason').fill(reason);
  await page.getByTestId('submit-proposal').click();
  await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  await hydrated(page);
  await expect(page.getByTestId('proposal-state')).toHaveText('pending');
  await page.getByTestId('comment').fill('withdrawn by its author');
  await page.getByTestId('withdraw').click();
  await expect(page.getByTestId('proposal-state')).toHaveText('withdrawn');
  await expect(page.getByTestId('decisions')).toContainText('withdrawn by its author');

  await page.goto('/policies/trail?step=withdrawn');
  await hydrated(page);
  await expect(page.locator('[data-step="withdrawn"]', { hasText: 'withdrawn by its author' }).first()).toBeVisible();
  await expect(page.locator('select[name="step"]')).toHaveValue('withdrawn');
  expect(consoleErrors).toEqual([]);
});
