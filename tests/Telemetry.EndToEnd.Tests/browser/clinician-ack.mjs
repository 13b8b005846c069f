// A clinician sees the alert waiting in the inbox has escalated, acknowledges it using the keyboard, and it leaves
// the inbox; the patient's page says who acknowledged it.

import { run, signIn, env, screenshot, until } from './harness.mjs';

await run('clinician-ack', async page => {
  await signIn(page, '/', env('CLINICIAN_TOKEN'));
  await until('the patient list', async () => (await page.locator('#status').textContent())?.endsWith('patients.'));
  // p-web-3's high heart-rate alert, waiting for someone.
  const waiting = page.locator('#inbox li[data-alert^="p-web-3~"]');
  await until('the alert in the inbox', async () => (await waiting.count()) === 1);
  const alert = waiting.first();
  if (!(await alert.textContent())?.includes('High')) throw new Error(`the alert does not say its priority: ${await alert.textContent()}`);
  await until('the alert to say it escalated', async () => (await alert.textContent())?.includes('Escalated'));
  await screenshot(page, 'alert-inbox');

  await alert.getByRole('button', { name: /^Acknowledge/ }).focus();
  await page.keyboard.press('Enter');
  await until('the alert to leave the inbox', async () => (await waiting.count()) === 0);
  await until('the confirmation', async () => (await page.locator('#status').textContent())?.startsWith('Acknowledged'));
  await screenshot(page, 'alert-acknowledged');

  await page.locator('a[href="/patients/p-web-3"]').first().click();
  await page.waitForURL('**/patients/p-web-3');
  const history = page.locator('#patient-alerts');
  await until('the patient page to say who acknowledged the alert', async () => (await history.textContent())?.includes('acknowledged by dr-web'));
});
