import { test, expect, hydrated, snapshot, signIn, ADMIN, newUserPage, createUser, firstSignIn } from './fixtures';
import * as crypto from 'crypto';
import * as http from 'http';
import * as net from 'net';

// Names unique to this run: the suite can run again on the same server.
const RUN = Date.now().toString(36);
const SECRET = `forwarding secret ${RUN}`;

type Got = { headers: http.IncomingHttpHeaders; body: string };

/** A real HTTP receiver standing in for a SIEM's ingest endpoint. */
async function siem(): Promise<{ url: string; got: Got[]; close: () => void }> {
  const got: Got[] = [];
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      got.push({ headers: req.headers, body });
      res.writeHead(200).end();
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as net.AddressInfo).port;
  return { url: `http://127.0.0.1:${port}/custos`, got, close: () => server.close() };
}

function signed(g: Got): boolean {
  const ts = String(g.headers['x-custos-timestamp']);
  const mac = crypto.createHmac('sha256', SECRET).update(`${ts}.${g.body}`).digest('hex');
  return g.headers['x-custos-signature'] === `v1=${mac}`;
}

/** Every ECS record the receiver got. */
function records(got: Got[]): any[] {
  return got.flatMap((g) => JSON.parse(g.body));
}

test('a destination is added through the form with a format preview, reviewed, catches up, and takes a test event', async ({ page, browser, baseURL, consoleErrors }) => {
  const hook = await siem();
  try {
    await signIn(page, ADMIN.username, ADMIN.password);
    const approverName = `fwd_approver_${RUN}`;
    await createUser(page, approverName, 'approver initial 1', 'admin');
    const approver = await newUserPage(browser);
    await firstSignIn(approver, approverName, 'approver initial 1', 'approver chosen password');

    const id = `elastic-${RUN}`;
    await page.goto('/forwarding');
    await hydrated(page);
    const form = page.getByTestId('add-destination');
    await form.getByTestId('destination-type').selectOption('webhook');
    await form.getByTestId('destination-id').fill(id);
    await form.getByTestId('destination-name').fill('Elastic (SOC)');
    await form.getByTestId('destination-format').selectOption('ecs');
    await form.getByTestId('destination-url').fill(hook.url);
    await form.getByTestId('destination-auth').selectOption('hmac');
    await form.getByTestId('destination-secret').fill(SECRET);
    // The format on a real recent event, before anything is saved.
    await form.getByTestId('preview-destination').click();
    const preview = page.getByTestId('preview-record');
    await expect(preview).toContainText('"event"');
    await expect(preview).toContainText('"kind": "event"');
    await expect(page.getByTestId('preview-wire')).toContainText('[{');
    // UDP syslog is allowed, with a warning.
    await form.getByTestId('destination-type').selectOption('syslog');
    await form.getByTestId('destination-transport').selectOption('udp');
    await expect(page.getByTestId('udp-warning')).toBeVisible();
    await form.getByTestId('destination-type').selectOption('webhook');
    await form.getByTestId('destination-url').fill(hook.url);
    await form.getByTestId('destination-auth').selectOption('hmac');
    await form.getByTestId('destination-secret').fill(SECRET);
    await form.getByTestId('destination-reason').fill(`events to the SOC (${RUN})`);
    await form.getByTestId('submit-destination').click();
    await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
    await approver.goto(page.url());
    await hydrated(approver);
    await approver.getByTestId('approve').click();
    await expect(approver.getByTestId('proposal-state')).toHaveText('approved');

    // In force: the destination forwards what is committed from now on.
    await page.goto('/forwarding');
    await hydrated(page);
    const row = page.locator(`[data-testid="destination"][data-destination="${id}"]`);
    await expect(row).toContainText(hook.url);
    await expect(page.locator('body')).not.toContainText(SECRET);
    await expect(row).toHaveAttribute('data-state', 'ok', { timeout: 15_000 });
    const actor = `fwd_actor_${RUN}`;
    let last = 0;
    for (let i = 0; i < 20; i++) {
      const res = await page.request.post('/api/audit/events', {
        data: {
          occurred_at: new Date().toISOString(), category: 'data_access', action: 'document.read', outcome: 'success',
          actor: { id: actor, kind: 'user', ip: '198.51.100.20' }, source: { application: 'portal', channel: 'api' },
        },
        headers: { origin: new URL(baseURL!).origin },
      });
      expect(res.status(), await res.text()).toBe(201);
      last = (await res.json()).events[0].seq;
    }
    await expect.poll(() => records(hook.got).filter((r) => r.user?.id === actor).length, { timeout: 15_000 }).toBe(20);
    expect(hook.got.every(signed)).toBe(true);
    const mine = records(hook.got).filter((r) => r.user?.id === actor);
    expect(mine[0].event.action).toBe('document.read');
    const seqs = mine.map((r) => r.event.sequence);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    // The page follows, live: the cursor passes the last event, the lag
    // goes to zero, the count of delivered events grows.
    const lagCell = row.getByTestId('destination-lag');
    await expect.poll(async () => Number(await lagCell.getAttribute('data-cursor')), { timeout: 15_000 }).toBeGreaterThanOrEqual(last);
    // Caught up, or behind only by what was committed in the last seconds
    // (this page's own reads are audited events too).
    await expect(lagCell).toHaveAttribute('data-live', 'true', { timeout: 15_000 });
    await expect(lagCell).toContainText(/caught up|live: \d+ entries/);
    await expect.poll(async () => Number(await row.getByTestId('destination-delivered').getAttribute('data-delivered')), { timeout: 15_000 }).toBeGreaterThanOrEqual(20);

    // A test event, recorded and sent at once.
    await row.getByTestId('test-destination').click();
    await expect(row.getByTestId('destination-result')).toContainText('delivered');
    await expect.poll(() => records(hook.got).filter((r) => r.event?.action === 'custos.forward.tested').length, { timeout: 10_000 }).toBeGreaterThan(0);
    await snapshot(page, 'forwarding');

    // Paused: the row says so, and resumes.
    await row.getByTestId('pause-destination').click();
    await expect(row).toHaveAttribute('data-state', 'paused', { timeout: 10_000 });
    await row.getByTestId('pause-destination').click();
    await expect(row).not.toHaveAttribute('data-state', 'paused', { timeout: 10_000 });
    // Left paused: its receiver goes away with this test (a failing
    // destination would open an alert in the suites that follow).
    await row.getByTestId('pause-destination').click();
    await expect(row).toHaveAttribute('data-state', 'paused', { timeout: 10_000 });
    expect(consoleErrors).toEqual([]);
  } finally {
    hook.close();
  }
});
