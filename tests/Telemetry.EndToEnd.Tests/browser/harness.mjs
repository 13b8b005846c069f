// Runs one browser scenario against a running Telemetry server in Debian's Chromium, driven by playwright-core.
// The xunit test that starts the server passes what the scenario needs in the environment; a failed step exits 1
// with its reason, and a screenshot of the page as it was is saved beside the others.

import { chromium } from 'playwright-core';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';

export const env = name => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
};

export const base = () => env('TELEMETRY_URL');

const screenshots = () => {
  const folder = env('SCREENSHOTS');
  mkdirSync(folder, { recursive: true });
  return folder;
};

/** Saves what the page shows now as {name}.png in the screenshots folder. */
export async function screenshot(page, name) {
  await page.screenshot({ path: join(screenshots(), `${name}.png`), fullPage: true });
}

/** Signs in on the page at path by pasting the token, as a person would. */
export async function signIn(page, path, token) {
  await page.goto(base() + path);
  await page.getByLabel('Your access token').fill(token);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
}

/**
 * Runs scenario(page) in a fresh browser at tablet size; any failure ends the process with exit code 1, and so does
 * any error the page reports, but for console errors matching expectedErrors (a refusal the scenario provokes).
 */
export async function run(name, scenario, expectedErrors = null) {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
  rmSync(join(screenshots(), `${name}-failed.png`), { force: true });
  const page = await browser.newPage({ viewport: { width: 1024, height: 768 } });
  const problems = [];
  page.on('pageerror', error => problems.push(`page error: ${error.message}`));
  page.on('console', message => {
    if (message.type() === 'error') problems.push(`console: ${message.text()} (${message.location().url})`);
  });
  try {
    await scenario(page);
    const unexpected = problems.filter(p => !expectedErrors?.test(p));
    if (unexpected.length > 0) throw new Error(`the page reported errors:\n${unexpected.join('\n')}`);
    console.log(`${name}: passed`);
  } catch (error) {
    console.error(`${name}: ${error.stack ?? error}`);
    console.error(`the page at ${page.url()} said: ${await page.locator('#status').textContent().catch(() => '(nothing)')}`);
    for (const problem of problems) console.error(problem);
    await screenshot(page, `${name}-failed`).catch(() => {});
    process.exitCode = 1;
  } finally {
    await browser.close();
  }
}

/** Waits until check() is true, polling, or fails with what was expected. */
export async function until(what, check, timeoutMs = 15_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise(resolve => setTimeout(resolve, 200));
  }
}
