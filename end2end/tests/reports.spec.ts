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
