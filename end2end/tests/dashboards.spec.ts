import { test, expect, hydrated, snapshot, signIn, ADMIN } from './fixtures';
import { Page } from '@playwright/test';

// The server was seeded with `custos demo seed` (scripts/test.sh).
const RUN = Date.now().toString(36);

function thousands(n: number): string {
  return n.toLocaleString('en-US');
}

/** Waits until echarts has painted a canvas in the chart element. */
async function chartDrawn(page: Page, id: string) {
  await expect(page.locator(`#${id} canvas`)).toHaveCount(1);
}

/** Clicks the bar of `category` in a horizontal bar chart (a real mouse click on the canvas). */
async function clickBar(page: Page, id: string, category: string) {
  await page.locator(`#${id}`).scrollIntoViewIfNeeded();
  const point = await page.evaluate(([id, category]) => {
    const el = document.getElementById(id)!;
    const chart = (window as any).echarts.getInstanceByDom(el);
    const option = chart.getOption();
    const names: string[] = option.yAxis[0].data;
    const i = names.indexOf(category);
    const value = option.series[0].data[i];
    const v = typeof value === 'object' ? value.value : value;
    const [x, y] = chart.convertToPixel({ seriesIndex: 0 }, [v / 2, i]);
    const r = el.getBoundingClientRect();
    return { x: r.left + x, y: r.top + y };
  }, [id, category]);
  await page.mouse.click(point.x, point.y);
}

test('analytics: charts from the seeded data, numbers as the API says, live, drill-down', async ({ page }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/analytics?range=30d');
  await hydrated(page);
  await expect(page.getByRole('navigation', { name: 'Main' }).getByRole('link', { name: 'Analytics' })).toHaveAttribute('aria-current', 'page');
  await expect(page.getByTestId('kpi-total')).not.toHaveText('…');
  for (const id of ['volume-chart', 'rates-chart', 'top-actions-chart', 'top-actors-chart', 'outcomes-chart', 'auth-chart', 'tools-chart', 'mcp-actions-chart', 'plugins-chart', 'notifications-chart']) {
    await chartDrawn(page, id);
  }
  // Figures the page shows are the API's (ones that reading does not change).
  const res = await page.request.get('/api/audit/analytics?range=30d');
  expect(res.status()).toBe(200);
  const a = await res.json();
  expect(a.authentication.lockouts).toBeGreaterThan(0);
  await expect(page.getByTestId('kpi-lockouts')).toHaveText(thousands(a.authentication.lockouts));
  await expect(page.getByTestId('kpi-mfa')).toHaveText(thousands(a.authentication.mfa));
  const tool = a.tools[0];
  const row = page.getByTestId('tools-table').locator('tbody tr').first();
  await expect(row.locator('td').nth(0)).toHaveText(tool.name);
  await expect(row.locator('td').nth(1)).toHaveText(thousands(tool.outcomes.success + tool.outcomes.failure + tool.outcomes.denied + tool.outcomes.error));
  expect(a.plugins.length).toBe(5);
  await expect(page.getByTestId('plugins-table').locator('tbody tr')).toHaveCount(5);
  await page.waitForTimeout(300);
  await snapshot(page, 'analytics');

  // Live: a tool call sent now shows up without a reload.
  const origin = new URL(page.url()).origin;
  const sent = await page.request.post('/api/audit/events', {
    headers: { origin },
    data: [{
      occurred_at: new Date().toISOString(), category: 'tool', action: 'tool.invoke', outcome: 'success', severity: 'info',
      actor: { id: 'e2e-agent', kind: 'service' }, resource: { type: 'tool', id: `e2e_tool_${RUN}` },
      source: { application: 'e2e', channel: 'mcp' }, metrics: { duration_ms: 42 },
    }],
  });
  expect(sent.status(), await sent.text()).toBe(201);
  const live = page.getByTestId('tools-table').locator('tbody tr', { hasText: `e2e_tool_${RUN}` });
  await expect(live).toHaveCount(1, { timeout: 15_000 });
  await expect(live.locator('td').nth(1)).toHaveText('1');
  await expect(page.getByTestId('live-state')).toHaveText('live');

  // Drill-down: a click on the top action's bar opens the explorer filtered by it.
  const top = a.top_actions[0].value as string;
  await clickBar(page, 'top-actions-chart', top);
  await expect(page).toHaveURL(new RegExp(`/events\\?action=${top.replace(/\./g, '\\.')}&from=`));
  await hydrated(page);
  await expect(page.getByTestId('events-table')).toHaveAttribute('aria-busy', 'false');
  await expect(page.getByTestId('filter-action')).toHaveValue(top);
  await expect(page.getByTestId('event-row').first()).toContainText(top);
});

test('compliance: every status computed, with its evidence; a verification turns the chain check green', async ({ page }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/compliance');
  await hydrated(page);
  await expect(page.getByTestId('checks')).toBeVisible();
  // The page's counts are the API's. The two are read a moment apart and a
  // check may change in between (background work about a minute after the
  // server starts, about when this test runs, changed one in a CI run): the
  // API is read, the page checks again, and the pair is compared until it
  // agrees.
  await expect(async () => {
    const r = await (await page.request.get('/api/compliance')).json();
    await page.getByTestId('refresh').click();
    for (const status of ['pass', 'warn', 'fail', 'no_evidence', 'not_configured']) {
      const n = r.checks.filter((c: any) => c.status === status).length;
      await expect(page.getByTestId(`checks-${status}`)).toHaveText(String(n), { timeout: 3_000 });
    }
  }).toPass({ timeout: 15_000 });
  for (const f of ['soc2', 'iso27001', 'iso27017', 'iso27018', 'iso27701', 'nist80053', 'pcidss4', 'hipaa', 'gdpr', 'sox']) {
    await expect(page.getByTestId(`framework-${f}`)).toBeVisible();
  }
  await expect(page.getByTestId('framework-nist80053').locator('tr[data-control]')).toHaveCount(12);
  // Computed from the policy store: no change yet, or each approved by a second person.
  await expect(page.locator('[data-check="policy_changes_reviewed"] [data-status]')).toHaveText('Passing');
  await expect(page.locator('[data-check="retention"] [data-status]')).toHaveText('Not configured');
  await expect(page.locator('[data-check="append_only"] [data-status]')).toHaveText('Passing');
  await chartDrawn(page, 'controls-chart');

  // Verify, then check again: the chain check passes with the figures of that run.
  const verify = await page.request.post('/api/audit/verify', { headers: { origin: new URL(page.url()).origin }, data: { wait: true } });
  expect((await verify.json()).intact).toBe(true);
  await page.getByTestId('refresh').click();
  await expect(page.locator('[data-check="chain_verified"] [data-status]')).toHaveText('Passing');
  await expect(page.locator('[data-check="chain_verified"]')).toContainText('Verified intact');
  await page.waitForTimeout(300);
  await snapshot(page, 'compliance');
  // Evidence: the authentication events in the explorer.
  await page.locator('[data-check="auth_events_recorded"]').getByRole('link', { name: 'See them in the explorer' }).click();
  await expect(page).toHaveURL(/\/events\?category=authentication&range=30d/);
  await hydrated(page);
  await expect(page.getByTestId('event-row').first()).toContainText('authentication');
});

test('integrity: verification progress to 100 %, history, signed checkpoints, public key, rotation', async ({ page }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await page.goto('/integrity');
  await hydrated(page);
  await expect(page.getByTestId('checkpoints').getByTestId('signature').first()).toHaveText('verified');
  const before = await page.getByTestId('history').locator('tbody tr').count();
  await page.getByTestId('verify-start').click();
  await expect(page.getByTestId('verify-progress')).toBeVisible();
  await expect(page.getByTestId('verify-percent')).toHaveText('100 %', { timeout: 20_000 });
  await expect(page.getByTestId('verify-result')).toContainText('Intact');
  await expect(page.getByTestId('history').locator('tbody tr')).toHaveCount(Math.min(before + 1, 20));
  await expect(page.getByTestId('history').locator('tbody tr').first()).toContainText('intact');
  // A range.
  await page.getByTestId('from-seq').fill('10');
  await page.getByTestId('to-seq').fill('60');
  await page.getByTestId('verify-start').click();
  await expect(page.getByTestId('verify-result')).toContainText('51 entries checked (seq 10–60)');

  // The public key, as a file, is the one the API gives.
  const [download] = await Promise.all([page.waitForEvent('download'), page.getByTestId('download-key').click()]);
  const fs = await import('fs');
  const key = fs.readFileSync((await download.path())!, 'utf8').trim();
  await expect(page.getByTestId('public-key')).toHaveText(key);

  // Rotation (the admin confirms).
  const keyBefore = (await (await page.request.get('/api/keys')).json()).current_key_id;
  page.once('dialog', (d) => d.accept());
  await page.getByTestId('rotate').click();
  await expect(page.getByTestId('rotate-result')).toContainText('Rotated: new events are sealed with data key');
  const keyAfter = (await (await page.request.get('/api/keys')).json()).current_key_id;
  expect(keyAfter).toBeGreaterThan(keyBefore);
  await expect(page.getByTestId('rotate-result')).toHaveText(`Rotated: new events are sealed with data key ${keyAfter}.`);
  await expect(page.getByTestId('key-status')).toContainText(`data key ${keyAfter},`);
  await snapshot(page, 'integrity');
});

test('integrity on a tampered database names the failing seq', async ({ page }) => {
  const base = process.env.E2E_TAMPERED_URL;
  const seq = process.env.E2E_TAMPERED_SEQ;
  expect(base, 'scripts/test.sh starts the tampered server').toBeTruthy();
  await page.goto(`${base}/login`);
  await page.getByLabel('User name').fill(ADMIN.username);
  await page.getByLabel('Password').fill(ADMIN.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.goto(`${base}/integrity`);
  await hydrated(page);
  await page.getByTestId('verify-start').click();
  await expect(page.getByTestId('verify-percent')).toHaveText('100 %', { timeout: 20_000 });
  await expect(page.getByTestId('verify-result')).toContainText(`FAILED at seq ${seq}`);
  await expect(page.getByTestId('history').locator('tbody tr').first()).toContainText(`FAILED at seq ${seq}`);
  await snapshot(page, 'integrity-tampered');
  // The compliance page says so too.
  await page.goto(`${base}/compliance`);
  await hydrated(page);
  await expect(page.locator('[data-check="chain_verified"] [data-status]')).toHaveText('Failing');
  await expect(page.locator('[data-check="chain_verified"]')).toContainText(`FAILED at seq ${seq}`);
});
