// Runs one browser scenario against a running Telemetry server in Debian's Chromium, driven by playwright-core.
// The xunit test that starts the server passes what the scenario needs in the environment; a failed step exits 1
// with its reason, and a screenshot of the page as it was is saved beside the others.

import { chromium } from 'playwright-core';
import { mkdirSync, rmSync } from 'node:fs';
import net from 'node:net';
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

/**
 * A TCP proxy on loopback in front of the server, for a page that must lose its network: down() resets every
 * connection through it and refuses new ones, as a ward's Wi-Fi dropping would; up() lets them through again.
 */
export async function faultyProxy(target = base()) {
  const { hostname, port } = new URL(target);
  const sockets = new Set();
  let refusing = false;
  const server = net.createServer(client => {
    if (refusing) {
      client.resetAndDestroy();
      return;
    }

    const upstream = net.connect(Number(port), hostname);
    sockets.add(client);
    sockets.add(upstream);
    const drop = () => {
      sockets.delete(client);
      sockets.delete(upstream);
      client.destroy();
      upstream.destroy();
    };
    for (const socket of [client, upstream]) {
      socket.on('error', drop);
      socket.on('close', drop);
    }
    client.pipe(upstream);
    upstream.pipe(client);
  });
  await new Promise(resolve => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    down() {
      refusing = true;
      for (const socket of [...sockets]) socket.resetAndDestroy();
      sockets.clear();
    },
    up() {
      refusing = false;
    },
    close() {
      this.down();
      server.close();
    },
  };
}
