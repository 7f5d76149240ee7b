// The web console end to end in a real browser (Debian's chromium, driven by playwright-core):
// sign-up, logout, login, claim, live events, a setting changed and reported back by the
// simulated device, a technician granted and revoked, the pages at desktop and phone size.
// Then an administrator's overview: users, certificates, a firmware upload and a rollout.
// Run by crates/testkit/tests/blackbox/console.rs, which starts Warden and the device and passes:
//   WARDEN_URL, DEVICE_ID, CLAIM_CODE, TECH_EMAIL, ADMIN_EMAIL, ADMIN_PASSWORD,
//   SCREENSHOTS (a directory), CHROMIUM (a path).
// Exits 0 when every step passed; otherwise prints the failed step and exits 1.

import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};
const base = env('WARDEN_URL');
const deviceId = env('DEVICE_ID');
const claimCode = env('CLAIM_CODE');
const technician = env('TECH_EMAIL');
const adminEmail = env('ADMIN_EMAIL');
const adminPassword = env('ADMIN_PASSWORD');
const screenshots = env('SCREENSHOTS');
const email = 'customer@example.com';
const password = 'a long and unusual passphrase 42';

const browser = await chromium.launch({
  executablePath: env('CHROMIUM'),
  // The tests run as root in CI, where chromium's sandbox cannot start.
  args: ['--no-sandbox'],
});
// Warden's certificate comes from its own CA, which this throwaway profile does not hold.
const context = await browser.newContext({ ignoreHTTPSErrors: true, viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
const problems = [];
page.on('pageerror', (error) => problems.push(`script error: ${error.message}`));
page.on('console', (message) => {
  if (message.type() === 'error' && /Content Security Policy/i.test(message.text())) problems.push(`CSP: ${message.text()}`);
});
page.on('request', (request) => {
  if (!request.url().startsWith(base) && !request.url().startsWith('data:')) problems.push(`third-party request: ${request.url()}`);
});

let step = 'start';
const expect = async (what, check) => {
  step = what;
  await check();
  console.log(`ok: ${what}`);
};
const shot = (name) => page.screenshot({ path: `${screenshots}/${name}.png`, fullPage: true });

/** Every form control has a name a screen reader reads out. */
const unlabelled = () => page.evaluate(() => [...document.querySelectorAll('input:not([type=hidden]), select, textarea, button')]
  .filter((element) => !(element.labels?.length) && !element.getAttribute('aria-label') && !(element.textContent ?? '').trim())
  .map((element) => element.outerHTML));

try {
  await expect('sign up', async () => {
    await page.goto(`${base}/signup`);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Create account' }).click();
    await page.waitForURL(/\/account/);
  });

  await expect('the console logs in with the session and lists no devices', async () => {
    await page.goto(`${base}/console/`);
    await page.getByRole('heading', { name: 'Your devices' }).waitFor();
    await page.getByText(`Logged in as ${email}`).waitFor();
    await page.getByText('No devices yet.').waitFor();
  });

  await expect('log out, then log in again', async () => {
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/login/);
    await page.getByLabel('E-mail').fill(email);
    await page.getByLabel('Password').fill(password);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('heading', { name: 'Your devices' }).waitFor();
  });

  await expect('claim the device by its code', async () => {
    await page.getByLabel('Device id').fill(deviceId);
    await page.getByLabel('Claim code').fill(claimCode);
    await page.getByRole('button', { name: 'Claim' }).click();
    await page.getByRole('heading', { name: deviceId }).waitFor();
  });

  await expect('live events from the simulated device appear', async () => {
    await page.locator('#live-events tr', { hasText: 'events' }).first().waitFor({ timeout: 20_000 });
  });

  await expect('a changed setting is saved and reported back by the device', async () => {
    await page.getByLabel('New setting').fill('temperature');
    await page.getByLabel('Its value').fill('45');
    await page.getByRole('button', { name: 'Save settings' }).click();
    await page.getByText('Settings saved').waitFor();
    await page.locator('[data-setting="temperature"]', { hasText: '45' }).waitFor({ timeout: 20_000 });
    await page.getByRole('cell', { name: 'applied', exact: true }).first().waitFor({ timeout: 20_000 });
  });

  await expect('every control of the device page has a label', async () => {
    const missing = await unlabelled();
    if (missing.length) throw new Error(`unlabelled: ${missing.join(' ')}`);
  });
  await shot('device');

  await expect('a technician is granted access and then revoked', async () => {
    await page.getByLabel("Technician's e-mail").fill(technician);
    await page.getByLabel('For hours').fill('8');
    await page.getByRole('button', { name: 'Grant', exact: true }).click();
    await page.getByRole('row', { name: new RegExp(`${technician}.*active`) }).waitFor();
    await shot('grants');
    await page.getByRole('button', { name: `Revoke the grant to ${technician}` }).click();
    await page.getByRole('row', { name: new RegExp(`${technician}.*revoked`) }).waitFor();
  });

  await expect('the access log shows the grant', async () => {
    await page.reload();
    await page.getByRole('heading', { name: 'Access log' }).waitFor();
    await page.getByRole('cell', { name: 'grant.create' }).first().waitFor();
  });

  await expect('the device list shows the device online', async () => {
    await page.getByRole('link', { name: 'Devices' }).click();
    await page.getByRole('row', { name: new RegExp(`${deviceId}.*online`) }).waitFor({ timeout: 20_000 });
  });
  await shot('devices');

  await expect('the pages work on a phone-sized screen', async () => {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.getByRole('link', { name: deviceId }).click();
    await page.getByRole('heading', { name: deviceId }).waitFor();
    const wide = await page.evaluate(() => document.documentElement.scrollWidth > window.innerWidth + 1);
    if (wide) throw new Error('the page scrolls sideways at 390 px');
  });
  await shot('device-phone');

  await expect('an administrator logs in and sees the administration', async () => {
    await page.setViewportSize({ width: 1280, height: 900 });
    await page.getByRole('button', { name: 'Log out' }).click();
    await page.waitForURL(/\/login/);
    await page.getByLabel('E-mail').fill(adminEmail);
    await page.getByLabel('Password').fill(adminPassword);
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('link', { name: 'Administration' }).click();
    for (const heading of ['Devices', 'Users', 'Certificates expiring within 30 days', 'Firmware releases', 'Rollouts', 'OAuth clients']) {
      await page.getByRole('heading', { name: heading, exact: true }).waitFor();
    }
    await page.getByRole('cell', { name: email, exact: true }).waitFor();
  });

  await expect('an administrator uploads a release and starts a rollout', async () => {
    await page.getByLabel('Model').fill('washer-w500');
    await page.getByLabel('Version').fill('1.1.0');
    await page.getByLabel('File').setInputFiles({ name: 'washer.bin', mimeType: 'application/octet-stream', buffer: Buffer.alloc(4096, 7) });
    await page.getByRole('button', { name: 'Upload' }).click();
    await page.getByText('Release 1.1.0 for washer-w500 is ready').waitFor();
    await page.getByLabel('Stages (percent)').fill('100');
    await page.getByRole('button', { name: 'Start rollout' }).click();
    await page.getByText(/Rollout ro_\w+ started: 1 of 1 devices offered/).waitFor();
    const missing = await unlabelled();
    if (missing.length) throw new Error(`unlabelled: ${missing.join(' ')}`);
  });
  await shot('admin');

  await expect('no script error, CSP violation or third-party request', async () => {
    if (problems.length) throw new Error(problems.join('\n'));
  });
} catch (error) {
  console.error(`FAILED at "${step}": ${error.message}`);
  await shot('failure').catch(() => undefined);
  await browser.close();
  process.exit(1);
}
await browser.close();
