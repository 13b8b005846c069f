// A clinician signs in, finds their patient with the latest heart rate, and sees a new reading arrive without reloading;
// then, on the patient's page, a new alert.

import { run, signIn, env, base, screenshot, until } from './harness.mjs';

await run('clinician-live', async page => {
  await signIn(page, '/', env('CLINICIAN_TOKEN'));
  const row = page.locator('tr[data-patient="p-web-4"]');
  await row.waitFor();
  const heartRate = row.locator('.vital[data-kind="heart_rate"] .value');
  await until('the latest heart rate', async () => (await heartRate.textContent())?.includes('beats/min'));
  if (await page.locator('tr[data-patient="p-web-other"]').count() !== 0) throw new Error('a patient outside the care team is listed');

  // The watch sends a new reading; the row shows it over the live stream, with no reload.
  const response = await fetch(`${base()}/api/devices/web-live/readings`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${env('DEVICE_TOKEN')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ readings: [{ kind: 'heart_rate', time: new Date().toISOString(), value: 93 }] }),
  });
  if (!response.ok) throw new Error(`the upload answered ${response.status}`);
  await until('the new heart rate of 93 beats/min', async () => (await heartRate.textContent()) === '93 beats/min');
  await screenshot(page, 'clinician-dashboard');

  // On the patient's page, an alert raised while it is open is listed as it comes, with no reload.
  await row.locator('a').click();
  await page.waitForURL('**/patients/p-web-4');
  const alerts = page.locator('#patient-alerts');
  await until('the empty alert list', async () => (await alerts.textContent())?.includes('No alerts'));
  const high = await fetch(`${base()}/api/devices/web-live/readings`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${env('DEVICE_TOKEN')}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ readings: [{ kind: 'heart_rate', time: new Date().toISOString(), value: 150 }] }),
  });
  if (!high.ok) throw new Error(`the upload answered ${high.status}`);
  await until('the new alert on the patient page', async () => (await alerts.textContent())?.includes('High'));
  await screenshot(page, 'patient-alert-live');
});
