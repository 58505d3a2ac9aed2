import { test, expect, hydrated, snapshot, signIn, ADMIN, newUserPage, createUser, firstSignIn } from './fixtures';

// Names unique to this run: the suite can run again on the same server.
const RUN = Date.now().toString(36);

// scripts/test.sh seeds 300 demo events recorded 200 days ago (before the
// events of the last week), so a 90-day rule has something to remove.
test('a 90-day rule for one category is proposed, approved by a second admin, run, and its archive verified', async ({ page, browser, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  const approverName = `ret_approver_${RUN}`;
  await createUser(page, approverName, 'approver initial 1', 'admin');
  const approver = await newUserPage(browser);
  await firstSignIn(approver, approverName, 'approver initial 1', 'approver chosen password');

  await page.goto('/retention');
  await hydrated(page);
  await expect(page.getByTestId('plan-summary')).toBeVisible();
  const rule = `tools-${RUN}`;
  const form = page.getByTestId('add-rule');
  await form.getByTestId('rule-id').fill(rule);
  await form.getByTestId('rule-category').selectOption('tool');
  await form.getByTestId('rule-period').selectOption('90');
  // 90 days is below the floor (365): an admin's override, with its reason.
  await form.getByTestId('rule-override').fill('tool calls carry no personal data; 90 days is enough');
  await form.getByTestId('rule-reason').fill(`keep tool calls 90 days (${RUN})`);
  await form.getByTestId('submit-rule').click();
  await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  // The dry-run on the proposal: how many events a run would remove now.
  const dryRun = page.getByTestId('test-report').first().locator('tr', { hasText: `removed now under rule ${rule}` });
  const n = Number(await dryRun.getByTestId('test-proposed').textContent());
  // On a fresh server (scripts/test.sh) the old tool calls are there; on a
  // second run against the same server they are gone already.
  expect(n).toBeGreaterThanOrEqual(0);

  await approver.goto(page.url());
  await hydrated(approver);
  await approver.getByTestId('approve').click();
  await expect(approver.getByTestId('proposal-state')).toHaveText('approved');

  // In force: the page's dry-run says the same, then a run removes them.
  await page.goto('/retention');
  await hydrated(page);
  await expect(page.locator(`[data-rule="${rule}"]`)).toContainText('90 days');
  await expect(page.getByTestId('plan-summary')).toContainText(`remove ${n} event(s)`);
  await page.getByTestId('run-now').click();
  await expect(page.getByTestId('run-progress')).toContainText('done', { timeout: 30_000 });
  await expect(page.getByTestId('run-progress')).toContainText(`${n} removed`);
  await expect(page.getByTestId('plan-summary')).toContainText('remove 0 event(s)');
  await expect(page.getByTestId('runs-table').locator('tbody tr').first()).toHaveAttribute('data-state', 'done');

  // The archive is listed, and verifies with the public key.
  const archive = page.getByTestId('archives-table').locator('tbody tr').first();
  if (n > 0) await expect(archive.getByTestId('archive-entries')).toHaveText(String(n));
  await archive.getByTestId('verify-archive').click();
  await expect(archive.getByTestId('archive-verified')).toContainText('intact', { timeout: 15_000 });
  await snapshot(page, 'retention');

  // The explorer no longer finds old tool calls.
  const res = await page.request.get('/api/audit?category=tool&to=' + encodeURIComponent(new Date(Date.now() - 150 * 86_400_000).toISOString()));
  expect(res.status()).toBe(200);
  expect((await res.json()).items).toEqual([]);

  // A viewer can neither open the page nor start a run.
  const viewerName = `viewer_ret_${RUN}`;
  await createUser(page, viewerName, 'viewer initial 13', 'viewer');
  const v = await newUserPage(browser);
  await firstSignIn(v, viewerName, 'viewer initial 13', 'viewer chosen password 3');
  const denied = await v.goto('/retention');
  expect(denied?.status()).toBe(403);
  expect((await v.request.post('/api/retention/runs', { headers: { origin: new URL(v.url()).origin } })).status()).toBe(403);
  expect(consoleErrors).toEqual([]);
});

test('an erasure request is approved by a second admin and carried out within seconds', async ({ page, browser, baseURL, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  const approverName = `erase_approver_${RUN}`;
  await createUser(page, approverName, 'approver initial 2', 'admin');
  const approver = await newUserPage(browser);
  await firstSignIn(approver, approverName, 'approver initial 2', 'approver chosen password');
  const subject = `erase_me_${RUN}`;
  for (let i = 0; i < 3; i++) {
    const res = await page.request.post('/api/audit/events', {
      data: {
        occurred_at: new Date().toISOString(), category: 'data_access', action: 'document.read', outcome: 'success',
        actor: { id: subject, kind: 'user' }, source: { application: 'portal', channel: 'api' },
      },
      headers: { origin: new URL(baseURL!).origin },
    });
    expect(res.status(), await res.text()).toBe(201);
  }
  await page.goto('/retention');
  await hydrated(page);
  const form = page.getByTestId('add-erasure');
  const id = `dsr-${RUN}`;
  await form.getByTestId('erasure-id').fill(id);
  await form.getByTestId('erasure-subject').fill(`actor=${subject}`);
  await form.getByTestId('erasure-reason').fill('the data subject asked (GDPR Art. 17)');
  await form.getByTestId('erasure-reference').fill(`DSR-${RUN}`);
  await form.getByTestId('submit-erasure').click();
  await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  await expect(page.getByTestId('test-report').first().locator('tr', { hasText: subject }).getByTestId('test-proposed')).toHaveText('3');
  await approver.goto(page.url());
  await hydrated(approver);
  await approver.getByTestId('approve').click();
  await expect(approver.getByTestId('proposal-state')).toHaveText('approved');

  // Carried out by the server within seconds of the approval.
  await expect.poll(async () => {
    await page.goto('/retention');
    await hydrated(page);
    return (await page.locator(`[data-request="${id}"]`).getByTestId('erasure-state').textContent()) ?? '';
  }, { timeout: 30_000, intervals: [1_000] }).toContain('erased 3');
  const res = await page.request.get(`/api/audit?actor=${subject}`);
  expect((await res.json()).items).toEqual([]);
  await snapshot(page, 'retention-erasure');
  expect(consoleErrors).toEqual([]);
});

// scripts/test.sh configures an S3 API server (moto, bucket custos-e2e under
// Object Lock) and daily cold copies: the first copy is made within seconds
// of start-up.
test('cold copies and archives go to the object store, and verify when fetched back', async ({ page, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/retention');
  await hydrated(page);
  await expect(page.getByTestId('archive-where')).toContainText('uploaded to s3://custos-e2e/custos (Object Lock: governance, 1 day)');
  await expect(page.getByTestId('cold-copies')).toContainText(/daily: sealed entries copied through #\d+/);
  const copy = page.getByTestId('archives-table').locator('tbody tr', { hasText: 'cold copy; s3://custos-e2e/custos/archives/custos-copy-' }).last();
  await expect(copy).toBeVisible();
  await copy.getByTestId('verify-archive').click();
  await expect(copy.getByTestId('archive-verified')).toContainText('intact', { timeout: 30_000 });
  // Downloaded through Custos from the store: the bundle's header.
  const href = await copy.getByRole('link', { name: 'Download' }).getAttribute('href');
  const res = await page.request.get(href!);
  expect(res.status()).toBe(200);
  const first = (await res.text()).split('\n')[0];
  expect(JSON.parse(first).format).toBe('custos-archive/v2');
  await snapshot(page, 'retention-object-store');
  expect(consoleErrors).toEqual([]);
});

test('a backup is taken from the Backups page and listed', async ({ page, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/backups');
  await hydrated(page);
  await page.getByTestId('backup-now').click();
  await expect(page.getByTestId('backup-progress')).toContainText('done', { timeout: 60_000 });
  const row = page.getByTestId('backups-table').locator('tbody tr').first();
  await expect(row).toHaveAttribute('data-state', 'done');
  await expect(page.getByTestId('last-backup')).not.toHaveText('none yet');
  // Uploaded to the object store (scripts/test.sh), and fetched back for download.
  await expect(page.getByTestId('backup-where')).toContainText('then uploaded to s3://custos-e2e/custos');
  await expect(row).toContainText('s3://custos-e2e/custos/backups/custos-backup-');
  const href = await row.getByRole('link', { name: 'Download' }).getAttribute('href');
  const res = await page.request.get(href!);
  expect(res.status()).toBe(200);
  expect((await res.body()).subarray(0, 200).toString()).toContain('custos-backup/v1');
  await snapshot(page, 'backups');
  expect(consoleErrors).toEqual([]);
});
