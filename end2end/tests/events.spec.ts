import { test, expect, hydrated, snapshot, signIn, ADMIN } from './fixtures';
import { APIRequestContext, Page } from '@playwright/test';
import { execFileSync } from 'child_process';
import * as fs from 'fs';
import * as zlib from 'zlib';

// Actions unique to this run: the tests can run again on the same server.
const RUN = Date.now().toString(36);

/** Sends events through the REST API with the signed-in admin's session. */
async function ingest(request: APIRequestContext, baseURL: string, events: object[]) {
  const res = await request.post('/api/audit/events', { data: events, headers: { origin: new URL(baseURL).origin } });
  expect(res.status(), await res.text()).toBe(201);
  return res.json();
}

function event(action: string, extra: object = {}) {
  return {
    occurred_at: new Date(Date.now() - 60_000).toISOString(),
    category: 'authentication', action, outcome: 'success', severity: 'info',
    actor: { id: 'e2e-user', kind: 'user', name: 'E2E User' },
    resource: { type: 'session', id: 'web-1' },
    source: { application: 'portal', channel: 'ui' },
    ...extra,
  };
}

function tenMinutesAgo() {
  return new Date(Date.now() - 10 * 60_000).toISOString();
}

async function openExplorer(page: Page, query = '') {
  await page.goto(`/events${query}`);
  await hydrated(page);
  await expect(page.getByTestId('events-table')).toHaveAttribute('aria-busy', 'false');
}

test('filters live in the URL: apply, reload, back and forward', async ({ page, baseURL }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await ingest(page.request, baseURL!, [
    ...Array.from({ length: 3 }, () => event(`e2e.filter.login.r${RUN}`, { outcome: 'denied', severity: 'warning', occurred_at: tenMinutesAgo() })),
    ...Array.from({ length: 2 }, () => event(`e2e.filter.login.r${RUN}`, { occurred_at: tenMinutesAgo() })),
  ]);
  await openExplorer(page);
  await expect(page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Events' })).toHaveAttribute('aria-current', 'page');
  await page.getByTestId('filter-action').fill(`e2e.filter.login.r${RUN}`);
  await page.getByTestId('filter-outcome').selectOption('denied');
  await page.getByTestId('apply-filters').click();
  await expect(page).toHaveURL(/action=e2e\.filter\.login/);
  await expect(page).toHaveURL(/outcome=denied/);
  await expect(page).toHaveURL(/range=24h/);
  await expect(page.getByTestId('event-row')).toHaveCount(3);
  await expect(page.getByTestId('result-count')).toHaveText('3 events');
  await expect(page.getByTestId('histogram')).toContainText('3 matching events, 24 min per bar');
  await expect(page.locator('#histogram-chart canvas')).toHaveCount(1);
  await page.waitForTimeout(300); // echarts paints on the next frame
  await snapshot(page, 'explorer-filtered');

  await page.reload();
  await hydrated(page);
  await expect(page.getByTestId('filter-action')).toHaveValue(`e2e.filter.login.r${RUN}`);
  await expect(page.getByTestId('filter-outcome')).toHaveValue('denied');
  await expect(page.getByTestId('event-row')).toHaveCount(3);

  // Back to the unfiltered list, forward to the filtered one.
  await page.getByTestId('filter-outcome').selectOption('');
  await page.getByTestId('apply-filters').click();
  await expect(page).not.toHaveURL(/outcome=/);
  await expect(page.getByTestId('event-row')).toHaveCount(5);
  await page.goBack();
  await expect(page).toHaveURL(/outcome=denied/);
  await expect(page.getByTestId('filter-outcome')).toHaveValue('denied');
  await expect(page.getByTestId('event-row')).toHaveCount(3);
  await page.goForward();
  await expect(page.getByTestId('event-row')).toHaveCount(5);

  // Dragging across the histogram narrows the period to what was selected.
  await page.goBack();
  await expect(page.getByTestId('event-row')).toHaveCount(3);
  const box = (await page.getByTestId('histogram-brush').boundingBox())!;
  await page.mouse.move(box.x + box.width * 0.5, box.y + box.height / 2);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.999, box.y + box.height / 2, { steps: 8 });
  await page.mouse.up();
  await expect(page).toHaveURL(/from=.*&to=/);
  await expect(page).not.toHaveURL(/range=/);
  await expect(page).toHaveURL(/outcome=denied/);
  await expect(page.getByTestId('filter-range')).toHaveValue('');
  await expect(page.getByTestId('event-row')).toHaveCount(3);

  // A search that matches nothing says so.
  await openExplorer(page, '?action=e2e.nothing.matches');
  await expect(page.getByTestId('empty')).toContainText('No events match');
  // A bad filter shows the server's reason.
  await openExplorer(page, '?range=custom&from=yesterday');
  await expect(page.getByTestId('search-error')).toContainText('from');
});

test('the drawer shows the event, its proof and related events; unmasking asks for a reason and is audited', async ({ page, baseURL }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  const requestId = `req-e2e-${Date.now()}`;
  await ingest(page.request, baseURL!, [
    event(`e2e.drawer.view.r${RUN}`, {
      actor: { id: 'jane.doe@example.com', kind: 'user' },
      correlation: { request_id: requestId },
      details: { contact: 'jane.doe@example.com', note: 'opened the payroll report' },
    }),
    event(`e2e.drawer.related.r${RUN}`, { correlation: { request_id: requestId } }),
  ]);
  await openExplorer(page, `?action=e2e.drawer.view.r${RUN}`);
  const row = page.getByTestId('event-row');
  await expect(row).toHaveCount(1);
  await expect(row).not.toContainText('jane.doe@example.com');
  await row.click();
  const drawer = page.getByTestId('drawer');
  await expect(drawer).toBeVisible();
  await expect(drawer.getByTestId('integrity')).toContainText('Integrity: verified');
  await expect(drawer.getByTestId('inclusion')).toHaveText('✓ yes');
  await expect(drawer.getByTestId('event-details')).toContainText('opened the payroll report');
  await expect(drawer.getByTestId('event-details')).not.toContainText('jane.doe@example.com');
  await expect(drawer.getByTestId('related')).toContainText(`e2e.drawer.related.r${RUN}`);
  await snapshot(page, 'explorer-drawer');

  await drawer.getByTestId('unmask-reason').fill('INC-4711 payroll access review');
  await drawer.getByTestId('unmask-submit').click();
  await expect(drawer.getByTestId('unmasked')).toContainText('jane.doe@example.com');
  await snapshot(page, 'explorer-unmasked');

  // The unmasking is in the log, with its reason.
  await openExplorer(page, '?action=audit.unmask');
  await expect(page.getByTestId('event-row').first()).toBeVisible();
  await page.getByTestId('event-row').first().click();
  await expect(page.getByTestId('event-details')).toContainText('INC-4711 payroll access review');
});

test('live tail shows a new matching event within seconds, and pauses', async ({ page, baseURL }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await openExplorer(page, `?action=e2e.tail.r${RUN}.*`);
  await page.getByTestId('live-toggle').check();
  await expect(page.getByTestId('tail-state')).toHaveText('following new events');
  await ingest(page.request, baseURL!, [event(`e2e.tail.r${RUN}.first`)]);
  await expect(page.getByTestId('event-row').filter({ hasText: `e2e.tail.r${RUN}.first` })).toHaveCount(1, { timeout: 5000 });
  await ingest(page.request, baseURL!, [event(`e2e.other.action.r${RUN}`)]);

  await page.getByTestId('tail-pause').click();
  await ingest(page.request, baseURL!, [event(`e2e.tail.r${RUN}.second`)]);
  await expect(page.getByTestId('tail-resume')).toHaveText('Resume (1 new)', { timeout: 5000 });
  await expect(page.getByTestId('event-row').filter({ hasText: `e2e.tail.r${RUN}.second` })).toHaveCount(0);
  await page.getByTestId('tail-resume').click();
  await expect(page.getByTestId('event-row').filter({ hasText: `e2e.tail.r${RUN}.second` })).toHaveCount(1);
  await expect(page.getByTestId('event-row').filter({ hasText: `e2e.other.action.r${RUN}` })).toHaveCount(0);
  await snapshot(page, 'explorer-live');
});

/** The named entry of a zip, inflated (from the central directory). */
function unzipEntry(buf: Buffer, name: string): Buffer {
  const eocd = buf.lastIndexOf(Buffer.from([0x50, 0x4b, 0x05, 0x06]));
  expect(eocd).toBeGreaterThan(0);
  const count = buf.readUInt16LE(eocd + 10);
  let p = buf.readUInt32LE(eocd + 16);
  for (let i = 0; i < count; i++) {
    expect(buf.readUInt32LE(p)).toBe(0x02014b50);
    const method = buf.readUInt16LE(p + 10);
    const csize = buf.readUInt32LE(p + 20);
    const [n, e, c] = [buf.readUInt16LE(p + 28), buf.readUInt16LE(p + 30), buf.readUInt16LE(p + 32)];
    const local = buf.readUInt32LE(p + 42);
    if (buf.toString('utf8', p + 46, p + 46 + n) === name) {
      const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
      const data = buf.subarray(start, start + csize);
      return method === 8 ? zlib.inflateRawSync(data) : data;
    }
    p += 46 + n + e + c;
  }
  throw new Error(`${name} is not in the zip`);
}

test('each export format downloads a valid file with its manifest', async ({ page, baseURL }, testInfo) => {
  test.setTimeout(90_000);
  await signIn(page, ADMIN.username, ADMIN.password);
  await ingest(page.request, baseURL!, Array.from({ length: 12 }, (_, i) =>
    event(`e2e.export.read.r${RUN}`, {
      details: { n: i },
      resource: { type: 'report', id: `r-${i}`, name: i === 0 ? '=HYPERLINK("http://x")' : 'Payroll' },
    })));
  await openExplorer(page, `?action=e2e.export.read.r${RUN}`);
  await expect(page.getByTestId('event-row')).toHaveCount(12);

  const files: Record<string, Buffer> = {};
  for (const format of ['csv', 'json', 'ndjson', 'xlsx', 'pdf']) {
    await page.getByTestId(`export-${format}`).click();
    await expect(page.getByTestId('export-done')).toContainText(`Download ${format.toUpperCase()} (12 rows)`, { timeout: 30_000 });
    const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-download').click()]);
    const file = testInfo.outputPath(`export.${format}`);
    await download.saveAs(file);
    files[format] = fs.readFileSync(file);
    expect(download.suggestedFilename()).toMatch(new RegExp(`^custos-audit-.*\\.${format}$`));
    const [manifest] = await Promise.all([page.waitForEvent('download'), page.getByTestId('export-manifest').click()]);
    const note = fs.readFileSync(await manifest.path()!, 'utf8');
    const m = JSON.parse(note.slice(0, note.lastIndexOf('\n\n') + 1));
    expect(m.rows).toBe(12);
    expect(m.format).toBe(format);
    expect(m.bytes).toBe(files[format].length);
    if (format === 'csv') await snapshot(page, 'explorer-export');
  }

  const csvLines = files.csv.toString('utf8').trim().split('\r\n');
  expect(csvLines[0]).toContain('seq,id,occurred_at');
  expect(csvLines).toHaveLength(13);
  expect(files.csv.toString('utf8')).toContain(`'=HYPERLINK`);
  expect(JSON.parse(files.json.toString('utf8'))).toHaveLength(12);
  expect(files.ndjson.toString('utf8').trim().split('\n').map((l) => JSON.parse(l).action)).toEqual(Array(12).fill(`e2e.export.read.r${RUN}`));
  const sheet = unzipEntry(files.xlsx, 'xl/worksheets/sheet1.xml').toString('utf8');
  expect(sheet.match(/<row /g)).toHaveLength(13);
  expect(sheet).toContain(`e2e.export.read.r${RUN}`);
  expect(files.pdf.subarray(0, 8).toString()).toBe('%PDF-1.7');
  const info = execFileSync('pdfinfo', [testInfo.outputPath('export.pdf')]).toString();
  expect(Number(/Pages:\s+(\d+)/.exec(info)![1])).toBe(3);
  const text = execFileSync('pdftotext', [testInfo.outputPath('export.pdf'), '-']).toString();
  expect(text).toContain('Audit log export');
  expect(text).toContain(`e2e.export.read.r${RUN}`);
});

test('columns and time zone are chosen per browser; saved searches come back', async ({ page }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await openExplorer(page, '?category=authentication&range=7d');
  await page.getByTestId('columns').locator('summary').click();
  await page.getByTestId('column-seq').check();
  await page.getByTestId('column-severity').uncheck();
  await expect(page.locator('th[data-col="seq"]')).toBeVisible();
  await expect(page.locator('th[data-col="severity"]')).toHaveCount(0);
  await page.getByTestId('utc-toggle').check();
  await expect(page.locator('td[data-col="time"]').first()).toContainText('UTC');

  await page.getByTestId('saved-save').click();
  await page.getByTestId('saved-name').fill('Logins this week');
  await page.getByTestId('saved-confirm').click();
  await expect(page.getByTestId('saved-select')).toContainText('Logins this week');

  await page.reload();
  await hydrated(page);
  await expect(page.locator('th[data-col="seq"]')).toBeVisible();
  await expect(page.locator('th[data-col="severity"]')).toHaveCount(0);
  await openExplorer(page, '?action=other');
  await page.getByTestId('saved-select').selectOption({ label: 'Logins this week' });
  await expect(page).toHaveURL(/category=authentication/);
  await expect(page).toHaveURL(/range=7d/);
  await expect(page.getByTestId('saved-delete')).toBeVisible();
  await snapshot(page, 'explorer-columns');
});
