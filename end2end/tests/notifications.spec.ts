import { test, expect, hydrated, snapshot, signIn, ADMIN, newUserPage, createUser, firstSignIn } from './fixtures';
import { Page } from '@playwright/test';
import { spawn, ChildProcess } from 'child_process';
import * as crypto from 'crypto';
import * as fs from 'fs';
import * as http from 'http';
import * as net from 'net';
import * as os from 'os';
import * as path from 'path';

// Names unique to this run: the suite can run again on the same server.
const RUN = Date.now().toString(36);
const WEBHOOK_SECRET = `webhook secret ${RUN} of some length`;
const SMTP_PASSWORD = `smtp password ${RUN}`;

type Got = { headers: http.IncomingHttpHeaders; body: string };

/** A real HTTP receiver on a free local port, keeping what it gets. */
async function receiver(): Promise<{ url: string; got: Got[]; close: () => void }> {
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
  return { url: `http://127.0.0.1:${port}/hooks/custos`, got, close: () => server.close() };
}

/** The aiosmtpd sink (scripts/smtp-sink.py), requiring a password. */
async function smtpSink(): Promise<{ port: number; dir: string; proc: ChildProcess }> {
  const port = await new Promise<number>((r) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => r(p));
    });
  });
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'custos-mail-'));
  const script = path.join(__dirname, '..', '..', 'scripts', 'smtp-sink.py');
  const proc = spawn('/usr/bin/python3', [script, '--port', String(port), '--dir', dir, '--user', 'custos', '--password', SMTP_PASSWORD]);
  await new Promise<void>((resolve, reject) => {
    proc.stdout!.on('data', (d) => String(d).startsWith('ready') && resolve());
    proc.on('exit', (code) => reject(new Error(`the SMTP sink exited (${code})`)));
  });
  return { port, dir, proc };
}

function signatureOk(g: Got, secret: string): boolean {
  const ts = String(g.headers['x-custos-timestamp']);
  const mac = crypto.createHmac('sha256', secret).update(`${ts}.${g.body}`).digest('hex');
  const sig = String(g.headers['x-custos-signature']);
  return sig.length === 67 && crypto.timingSafeEqual(Buffer.from(sig), Buffer.from(`v1=${mac}`));
}

/** Adds a channel through the form; the approver approves the proposal. */
async function addChannel(page: Page, approver: Page, fill: (form: ReturnType<Page['getByTestId']>) => Promise<void>) {
  await page.goto('/notifications');
  await hydrated(page);
  const form = page.getByTestId('add-channel');
  await fill(form);
  await form.getByTestId('channel-min').selectOption('warning');
  await form.getByTestId('channel-reason').fill(`alerts to secops (${RUN})`);
  await form.getByTestId('submit-channel').click();
  await expect(page).toHaveURL(/\/policies\/proposals\/[0-9a-f-]+$/);
  await approver.goto(page.url());
  await hydrated(approver);
  await approver.getByTestId('approve').click();
  await expect(approver.getByTestId('proposal-state')).toHaveText('approved');
}

test('channels are added in the browser and reviewed; an alert reaches a signed webhook and a mailbox; the log shows each attempt', async ({ page, browser, baseURL, consoleErrors }) => {
  const hook = await receiver();
  const sink = await smtpSink();
  try {
    await signIn(page, ADMIN.username, ADMIN.password);
    const approverName = `notify_approver_${RUN}`;
    await createUser(page, approverName, 'approver initial 1', 'admin');
    const approver = await newUserPage(browser);
    await firstSignIn(approver, approverName, 'approver initial 1', 'approver chosen password');

    // A webhook and a mailbox, each a reviewed change.
    const soar = `soar-${RUN}`;
    const mail = `mail-${RUN}`;
    await addChannel(page, approver, async (form) => {
      await form.getByTestId('channel-type').selectOption('webhook');
      await form.getByTestId('channel-id').fill(soar);
      await form.getByTestId('channel-name').fill('SOAR');
      await form.getByTestId('channel-url').fill(hook.url);
      await form.getByTestId('channel-secret').fill(WEBHOOK_SECRET);
    });
    await addChannel(page, approver, async (form) => {
      await form.getByTestId('channel-type').selectOption('email');
      await form.getByTestId('channel-id').fill(mail);
      await form.getByTestId('channel-name').fill('SecOps mailbox');
      await form.getByTestId('channel-to').fill('secops@example.org');
      await form.getByTestId('channel-from').fill('custos@example.org');
      await form.getByTestId('channel-host').fill('127.0.0.1');
      await form.getByTestId('channel-port').fill(String(sink.port));
      await form.getByTestId('channel-tls').selectOption('none');
      await form.getByTestId('channel-user').fill('custos');
      await form.getByTestId('channel-password').fill(SMTP_PASSWORD);
    });

    // Both are in force; secrets show as hints only. The webhook's test
    // arrives signed.
    await page.goto('/notifications');
    await hydrated(page);
    const row = page.locator(`[data-testid="channel"][data-channel="${soar}"]`);
    await expect(row).toContainText(hook.url);
    await expect(page.locator('body')).not.toContainText(WEBHOOK_SECRET);
    await expect(page.locator(`[data-testid="channel"][data-channel="${mail}"]`)).toContainText('secops@example.org');
    await row.getByTestId('test-channel').click();
    await expect(row.getByTestId('test-result')).toContainText('Delivered (200)');
    const tests = hook.got.filter((g) => JSON.parse(g.body).type === 'custos.test');
    expect(tests.length).toBe(1);
    expect(signatureOk(tests[0], WEBHOOK_SECRET)).toBe(true);

    // Six failed sign-ins: the alert goes to both.
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
    // (Other rules in force, such as one an earlier test made, may alert
    // on the same failures: the brute-force rule's message is looked for.)
    const brute = (g: Got) => g.body.includes(actor) && JSON.parse(g.body).alert?.rule_id === 'brute_force';
    await expect.poll(() => hook.got.filter(brute).length, { timeout: 15_000 }).toBe(1);
    const alertHook = hook.got.find(brute)!;
    expect(signatureOk(alertHook, WEBHOOK_SECRET)).toBe(true);
    expect(signatureOk(alertHook, 'not the secret at all')).toBe(false);
    const payload = JSON.parse(alertHook.body);
    expect(payload.alert.rule_id).toBe('brute_force');
    expect(payload.alert.group.actor).toBe(actor);
    expect(alertHook.headers['idempotency-key']).toBe(`${payload.alert.id}:${soar}`);
    const mails = () => fs.readdirSync(sink.dir).filter((f) => f.endsWith('.eml')).map((f) => fs.readFileSync(path.join(sink.dir, f), 'utf8'));
    const bruteMail = (m: string) => m.includes(actor) && m.includes('Subject: [Custos] warning: Brute force');
    await expect.poll(() => mails().filter(bruteMail).length, { timeout: 15_000 }).toBe(1);
    const letter = mails().find(bruteMail)!;
    expect(letter).toContain('Subject: [Custos] warning: Brute force');
    expect(letter).toContain('To: secops@example.org');

    // The delivery log shows each attempt.
    await page.goto(`/notifications?channel=${soar}`);
    await hydrated(page);
    const attempts = page.locator('[data-testid="attempt"]');
    await expect(attempts.filter({ hasText: 'test' })).toHaveCount(1);
    await expect(attempts.filter({ hasText: 'brute_force' })).toHaveAttribute('data-status', 'delivered');
    await page.goto(`/notifications?channel=${mail}&status=delivered`);
    await hydrated(page);
    await expect(page.locator('[data-testid="attempt"]').filter({ hasText: 'brute_force' })).toHaveCount(1);
    await expect(page.locator('[data-testid="attempt"][data-status="failed"]')).toHaveCount(0);
    await page.goto('/notifications');
    await hydrated(page);
    await snapshot(page, 'notifications');
    expect(consoleErrors).toEqual([]);
  } finally {
    hook.close();
    sink.proc.kill();
  }
});
