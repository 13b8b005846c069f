// A clinician's dashboard says when its live updates are away, and since when; an acknowledgement that cannot reach
// the server says so and leaves the alert to act on again; and a patient taken off the care team leaves the list, as
// it happens or, taken off while the page's connection was away, once it is back (the server asks again every 2 s here
// whom the clinician may read).

import { run, env, base, screenshot, until, faultyProxy } from './harness.mjs';

const putTeam = async patients => {
  const response = await fetch(`${base()}/api/care-teams/ward-web`, {
    method: 'PUT',
    headers: { Authorization: `Bearer ${env('ADMIN_TOKEN')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ patients }),
  });
  if (!response.ok) throw new Error(`the care team's change answered ${response.status}`);
};

await run('clinician-offline', async page => {
  // The page reaches the server through a proxy whose connections the scenario can cut.
  const network = await faultyProxy();
  try {
    await offline(page, network);
  } finally {
    network.close();
  }
}, /net::ERR_(CONNECTION_RESET|CONNECTION_REFUSED|CONNECTION_CLOSED|EMPTY_RESPONSE|SOCKET_NOT_CONNECTED)/);

async function offline(page, network) {
  await page.goto(`${network.url}/`);
  await page.getByLabel('Your access token').fill(env('CLINICIAN_TOKEN'));
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.locator('#app').waitFor({ state: 'visible' });
  await until('the patient list', async () => (await page.locator('#status').textContent())?.endsWith('patients.'));
  const waiting = page.locator('#inbox li[data-alert^="p-web-1~"]');
  await until("p-web-1's alert in the inbox", async () => (await waiting.count()) === 1);
  const banner = page.locator('#connection');
  if (await banner.isVisible()) throw new Error(`the banner shows while the page is live: ${await banner.textContent()}`);

  // The network goes: the page says its live updates are paused, and since when.
  network.down();
  await until('the banner saying live updates are paused', async () => (await banner.isVisible()) && (await banner.textContent())?.includes('paused since'));

  const acknowledge = waiting.first().getByRole('button', { name: /^Acknowledge/ });
  await acknowledge.click();
  await until('the failure to be told', async () => (await page.locator('#status').textContent())?.startsWith('Could not reach the server to acknowledge'));
  if (await acknowledge.isDisabled()) throw new Error('the Acknowledge button stayed disabled after the failure');
  await screenshot(page, 'clinician-offline');

  // The network comes back: the banner goes, and the alert, never acknowledged, is still waiting.
  network.up();
  await until('the banner to go', async () => !(await banner.isVisible()), 20_000);
  if ((await waiting.count()) !== 1) throw new Error('the alert left the inbox though it was never acknowledged');

  // p-web-1 leaves the care team: its row and its alert leave the page.
  await putTeam(['p-web-2', 'p-web-3', 'p-web-4']);
  try {
    await until("p-web-1's row to leave the list", async () => (await page.locator('tr[data-patient="p-web-1"]').count()) === 0);
    await until("p-web-1's alert to leave the inbox", async () => (await waiting.count()) === 0);
  } finally {
    await putTeam(['p-web-1', 'p-web-2', 'p-web-3', 'p-web-4']);
  }

  // Back on the team, p-web-1 returns with its alert. Then it leaves the team while the page's connection is away:
  // once the page is back, its row leaves too (a stream says `removed` only of patients dropped while it is open).
  await until("p-web-1's row to come back", async () => (await page.locator('tr[data-patient="p-web-1"]').count()) === 1);
  await until("p-web-1's alert to come back to the inbox", async () => (await waiting.count()) === 1);
  network.down();
  await until('the banner saying live updates are paused again', async () => (await banner.isVisible()) && (await banner.textContent())?.includes('paused since'));
  await putTeam(['p-web-2', 'p-web-3', 'p-web-4']);
  try {
    network.up();
    await until('the banner to go again', async () => !(await banner.isVisible()), 20_000);
    await until("p-web-1's row to leave the list after the reconnect", async () => (await page.locator('tr[data-patient="p-web-1"]').count()) === 0);
    await until("p-web-1's alert to leave the inbox after the reconnect", async () => (await waiting.count()) === 0);
  } finally {
    await putTeam(['p-web-1', 'p-web-2', 'p-web-3', 'p-web-4']);
  }
}
