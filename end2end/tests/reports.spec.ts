import { test, expect, expectStatus, hydrated, snapshot, signIn, ADMIN, newUserPage, createUser, firstSignIn } from './fixtures';
import * as crypto from 'crypto';
import * as fs from 'fs';

const RUN = Date.now().toString(36);

test('reports: a compliance officer generates a PCI DSS report for last month and downloads it and its manifest; a viewer cannot', async ({ page, browser }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  const officerName = `officer_${RUN}`;
  const viewerName = `viewer_${RUN}`;
  await createUser(page, officerName, 'officer initial 1', 'compliance_officer');
  await createUser(page, viewerName, 'viewer initial 1', 'viewer');

  const officer = await newUserPage(browser);
  await firstSignIn(officer, officerName, 'officer initial 1', 'officer chosen password');
  await officer.goto('/reports');
  await hydrated(officer);
  await expect(officer.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Reports' })).toHaveAttribute('aria-current', 'page');
  const form = officer.getByTestId('report-form');
  await expect(form.getByTestId('report-framework').locator('option[value="pcidss4"]')).toHaveCount(1);
  await form.getByTestId('report-framework').selectOption('pcidss4');
  await form.getByTestId('report-period').selectOption('previous_month');
  await form.getByTestId('report-seed').fill(`seed-${RUN}`);
  await form.getByTestId('report-generate').click();
  const ready = officer.getByTestId('report-ready');
  await expect(ready).toBeVisible({ timeout: 60_000 });
  await expect(ready).toContainText('ready');

  // The history lists it, with who asked.
  const row = officer.getByTestId('reports-table').locator('tbody tr').first();
  await expect(row).toContainText('pcidss4');
  await expect(row).toContainText(officerName);
  await snapshot(officer, 'reports');

  // The PDF and its manifest download; the manifest names the PDF's digest
  // and is signed by the ledger's key.
  const [pdfDownload] = await Promise.all([officer.waitForEvent('download'), ready.getByTestId('report-pdf').click()]);
  expect(pdfDownload.suggestedFilename()).toMatch(/^custos-report-pcidss4-\d{4}-\d{2}-01-\d{4}-\d{2}-\d{2}\.pdf$/);
  const pdf = fs.readFileSync((await pdfDownload.path())!);
  expect(pdf.subarray(0, 5).toString()).toBe('%PDF-');
  const sha = crypto.createHash('sha256').update(pdf).digest('hex');
  const [manifestDownload] = await Promise.all([officer.waitForEvent('download'), ready.getByTestId('report-pdf-manifest').click()]);
  const manifest = fs.readFileSync((await manifestDownload.path())!, 'utf8');
  const body = JSON.parse(manifest.slice(0, manifest.lastIndexOf('\n\n') + 1));
  expect(body.sha256).toBe(sha);
  expect(body.bytes).toBe(pdf.length);
  expect(body.format).toBe('report-pdf');
  expect(body.filters).toContainEqual(['framework', 'pcidss4']);
  expect(body.filters).toContainEqual(['seed', `seed-${RUN}`]);
  expect(manifest).toMatch(/\n\n— \S+ \S+\n$/);

  // Generating it is in the ledger.
  const recorded = await officer.request.get('/api/audit?action=custos.report.generated&limit=5');
  const found = (await recorded.json()).items.find((e: any) => e.details?.pdf_sha256 === sha);
  expect(found, 'the report generated is a ledger event').toBeTruthy();

  // The compliance page reads the snapshots over a period and offers the report.
  await officer.goto('/compliance');
  await hydrated(officer);
  const period = officer.getByTestId('compliance-period');
  await period.getByTestId('history-period').selectOption('last_30_days');
  await expect(period.getByTestId('history-summary')).toContainText('snapshots on');
  await expect(period.getByTestId('history-days').locator('span')).toHaveCount(30);
  await snapshot(officer, 'compliance-period');

  // A viewer gets neither the page nor the data.
  const viewer = await newUserPage(browser);
  await firstSignIn(viewer, viewerName, 'viewer initial 1', 'viewer chosen password');
  expectStatus(viewer, 403, '/reports');
  const denied = await viewer.goto('/reports');
  expect(denied?.status()).toBe(403);
  await expect(viewer.getByRole('heading', { name: 'Access denied' })).toBeVisible();
  const origin = new URL(viewer.url()).origin;
  expect((await viewer.request.post('/api/reports', { headers: { origin }, data: { framework: 'pcidss4', period: 'previous_month' } })).status()).toBe(403);
  expect((await viewer.request.get('/api/reports')).status()).toBe(403);
  expect((await viewer.request.get(`/api/reports/${found.resource.id}/pdf`)).status()).toBe(403);
});

test('reports: a schedule is proposed in the browser with a live cron preview, reviewed, and shown with its next run', async ({ page, browser }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  const plannerName = `planner_${RUN}`;
  await createUser(page, plannerName, 'planner initial 1', 'compliance_officer, notification_manager');
  const origin = new URL(page.url()).origin;

  const planner = await newUserPage(browser);
  await firstSignIn(planner, plannerName, 'planner initial 1', 'planner chosen password');

  // A channel to send to (a webhook: the browser part is the schedule),
  // proposed by the planner and approved by the admin.
  const channel = `reports-${RUN}`;
  const current = await (await planner.request.get('/api/policies/notifications')).json();
  const content = current.active.content;
  content.channels.push({ id: channel, name: `Reports hook ${RUN}`, type: 'webhook', url: 'https://hooks.example.org/custos', secret: { value: `a webhook secret ${RUN}!` } });
  const proposed = await planner.request.post('/api/policies/notifications/proposals', {
    headers: { origin }, data: { content, based_on: current.active.version, reason: `a channel for reports (${RUN})` },
  });
  expect(proposed.ok(), await proposed.text()).toBeTruthy();
  const p1 = await proposed.json();
  if (p1.state !== 'approved') {
    const ok = await page.request.post(`/api/policies/proposals/${p1.id}/approve`, { headers: { origin }, data: { comment: 'fine' } });
    expect(ok.status(), await ok.text()).toBe(200);
  }

  await planner.goto('/reports');
  await hydrated(planner);
  const form = planner.getByTestId('add-schedule');
  await expect(form).toBeVisible();
  const preview = form.getByTestId('schedule-cron-preview');
  await form.getByTestId('schedule-cron').fill('0 6 32 * *');
  await expect(preview).toContainText('Not a cron expression');
  await expect(preview).toContainText('day of month');
  await form.getByTestId('schedule-cron').fill('0 6 1 * *');
  await expect(preview).toContainText(/Next runs: \d{4}-\d{2}-01 06:00 UTC; \d{4}-\d{2}-01 06:00 UTC; \d{4}-\d{2}-01 06:00 UTC/);
  const id = `pci-${RUN}`;
  await form.getByTestId('schedule-id').fill(id);
  await form.getByTestId('schedule-name').fill('PCI DSS for the QSA');
  await form.getByTestId('schedule-framework').selectOption('pcidss4');
  await form.getByTestId('schedule-period').selectOption('previous_month');
  await form.getByTestId('schedule-channel').selectOption(channel);
  await form.getByTestId('schedule-keep').fill('6');
  await form.getByTestId('schedule-reason').fill(`monthly evidence for the QSA (${RUN})`);
  await snapshot(planner, 'report-schedule-form');
  await form.getByTestId('schedule-propose').click();

  // The proposal shows the next runs and what each would cover.
  await expect(planner).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  const test_ = planner.getByTestId('test-report');
  await expect(test_).toContainText(`${id}: next runs`);
  await expect(test_).toContainText(/06:00 UTC: pcidss4 covering \d{4}-\d{2}-01 to \d{4}-\d{2}-\d{2}/);
  await snapshot(planner, 'report-schedule-proposal');
  // The admin approves it (the author cannot).
  await page.goto(planner.url());
  await hydrated(page);
  await page.getByTestId('approve').click();
  await expect(page.getByTestId('proposal-state')).toHaveText('approved');

  // In force: listed with its next run on the 1st at 06:00.
  await planner.goto('/reports');
  await hydrated(planner);
  const row = planner.getByTestId('schedules-table').locator(`tr[data-schedule="${id}"]`);
  await expect(row).toContainText('PCI DSS for the QSA');
  await expect(row).toContainText('0 6 1 * *');
  await expect(row).toContainText(channel);
  await expect(row).toContainText(/\d{4}-\d{2}-01 06:00:00 UTC/);
  await expect(row).toContainText('none yet');
  await snapshot(planner, 'report-schedules');
  const api = await (await planner.request.get('/api/reports/schedules')).json();
  const mine = api.schedules.find((s: any) => s.schedule.id === id);
  expect(mine.next_run).toMatch(/^\d{4}-\d{2}-01T06:00:00/);

  // Turning it off is a proposal too.
  await row.getByTestId('schedule-toggle').click();
  await expect(planner).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  await expect(planner.getByText(`turn off the report schedule ${id}`)).toBeVisible();
  await expect(planner.getByTestId('test-report')).toContainText('PCI DSS for the QSA (changed, off)');
});
