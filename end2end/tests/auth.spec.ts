import {
  test, expect, expectStatus, hydrated, snapshot, signIn, ADMIN, newUserPage, totp, createUser, firstSignIn,
} from './fixtures';

test('the sign-in form works without JavaScript, and a wrong password shows an error', async ({ browser }) => {
  const context = await browser.newContext({ javaScriptEnabled: false });
  const page = await context.newPage();
  await signIn(page, ADMIN.username, 'not the password');
  await expect(page).toHaveURL(/\/login\?error=invalid/);
  await expect(page.getByTestId('login-error')).toHaveText('Invalid user name or password.');
  await snapshot(page, 'login-error');
  await signIn(page, ADMIN.username, ADMIN.password);
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByRole('heading', { name: 'Overview' })).toBeVisible();
  // Security headers on the page itself.
  const res = await page.goto('/');
  const headers = res!.headers();
  expect(headers['content-security-policy']).toMatch(/script-src 'self' 'nonce-[^']+' 'wasm-unsafe-eval'/);
  expect(headers['content-security-policy']).toContain("frame-ancestors 'none'");
  expect(headers['x-content-type-options']).toBe('nosniff');
  await context.close();
});

test('a viewer must change the password, sees no admin navigation and gets the 403 page on admin, compliance and integrity URLs', async ({ page, browser, consoleErrors }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await createUser(page, 'viewer_e2e', 'initial password 1', 'viewer');
  await snapshot(page, 'users');

  const viewer = await newUserPage(browser);
  await firstSignIn(viewer, 'viewer_e2e', 'initial password 1', 'viewer chosen password');
  await viewer.goto('/');
  await hydrated(viewer);
  const nav = viewer.getByRole('navigation', { name: 'Main' });
  await expect(nav.getByRole('link')).toHaveText(['Overview', 'Events', 'Analytics', /^Alerts( \d+)?$/]);
  await expect(viewer.getByTestId('account-link')).toHaveText('viewer_e2e');

  const viewerErrors: string[] = [];
  viewer.on('console', (m) => { if (m.type() === 'error' && !m.text().includes('status of 403')) viewerErrors.push(m.text()); });
  const denied = await viewer.goto('/admin/users');
  expect(denied?.status()).toBe(403);
  await expect(viewer.getByRole('heading', { name: 'Access denied' })).toBeVisible();
  await expect(viewer.locator('[data-testid="users"]')).toHaveCount(0);
  await snapshot(viewer, 'forbidden');
  // The server refuses the data too, not only the page.
  const api = await viewer.request.post('/rpc/list_users', { headers: { 'content-type': 'application/x-www-form-urlencoded' }, data: '' });
  expect(api.status()).toBe(403);
  // The compliance and integrity dashboards, and their data, are not a viewer's.
  for (const [page, data] of [['/compliance', '/api/compliance'], ['/integrity', '/api/audit/verifications']]) {
    const res = await viewer.goto(page);
    expect(res?.status(), page).toBe(403);
    await expect(viewer.getByRole('heading', { name: 'Access denied' })).toBeVisible();
    expect((await viewer.request.get(data)).status(), data).toBe(403);
  }
  // The analytics are: a viewer reads the audit log.
  await viewer.goto('/analytics');
  await hydrated(viewer);
  await expect(viewer.getByTestId('kpi-total')).not.toHaveText('…');
  expect(viewerErrors).toEqual([]);
  expect(consoleErrors).toEqual([]);
});

test('repeated wrong passwords lock the account, with a message that does not reveal whether it exists', async ({ page }) => {
  await signIn(page, ADMIN.username, ADMIN.password);
  await createUser(page, 'locky_e2e', 'locky password 12', 'viewer');
  const other = await newUserPage(page.context().browser()!);
  for (let i = 0; i < 4; i++) {
    await signIn(other, 'locky_e2e', `wrong password ${i}`);
    await expect(other.getByTestId('login-error')).toHaveText('Invalid user name or password.');
  }
  await signIn(other, 'locky_e2e', 'wrong password 5');
  await expect(other.getByTestId('login-error')).toContainText('Too many failed attempts');
  // Locked: the right password is refused too, with the same message.
  await signIn(other, 'locky_e2e', 'locky password 12');
  await expect(other.getByTestId('login-error')).toContainText('Too many failed attempts');
  await snapshot(other, 'lockout');
  // The administrator sees the lock.
  await page.goto('/admin/users');
  await expect(page.locator('tr[data-user="locky_e2e"] td.status')).toHaveText('locked');
});

test('MFA enrolment, then sign-in with a code computed here', async ({ page, browser }) => {
  test.setTimeout(120_000);
  await signIn(page, ADMIN.username, ADMIN.password);
  await createUser(page, 'mfa_e2e', 'mfa initial pass 1', 'security_analyst');

  const user = await newUserPage(browser);
  await firstSignIn(user, 'mfa_e2e', 'mfa initial pass 1', 'mfa chosen password');
  await expect(user.getByTestId('mfa-status')).toHaveText('Off.');
  await user.getByRole('button', { name: 'Set up an authenticator app' }).click();
  const secret = (await user.getByTestId('mfa-secret').textContent())!.trim();
  expect(secret).toMatch(/^[A-Z2-7]{32}$/);
  await expect(user.locator('.qr svg')).toBeVisible();
  await snapshot(user, 'mfa-setup');
  const enrolledAt = Date.now() / 1000;
  await user.getByLabel('Code shown by the app').fill(totp(secret, enrolledAt));
  await user.getByRole('button', { name: 'Turn on' }).click();
  await expect(user.getByTestId('recovery-codes').locator('li')).toHaveCount(10);
  await expect(user.getByTestId('mfa-status')).toContainText('On');

  await user.getByRole('button', { name: 'Sign out' }).click();
  await expect(user).toHaveURL(/\/login\?signed_out=1/);
  await signIn(user, 'mfa_e2e', 'mfa chosen password');
  await expect(user).toHaveURL(/\/login\/mfa/);
  // A code is accepted once: wait for the next 30-second step after enrolment.
  const nextStep = (Math.floor(enrolledAt / 30) + 1) * 30;
  const wait = nextStep * 1000 - Date.now();
  if (wait > 0) await user.waitForTimeout(wait + 200);
  await user.getByLabel('Code').fill(totp(secret, Date.now() / 1000));
  await user.getByRole('button', { name: 'Verify' }).click();
  await expect(user).toHaveURL(/\/$/);
  await expect(user.getByRole('heading', { name: 'Overview' })).toBeVisible();
});
