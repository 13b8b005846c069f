// A clinician whose token's SMART scopes only read sees the alerts waiting, and is offered nothing to act on them with.

import { run, signIn, env, until } from './harness.mjs';

await run('reader-no-actions', async page => {
  await signIn(page, '/', env('READER_TOKEN'));
  await until('the patient list', async () => (await page.locator('#status').textContent())?.endsWith('patients.'));
  // p-web-1's high heart-rate alert, waiting for someone.
  const waiting = page.locator('#inbox li[data-alert^="p-web-1~"]');
  await until('the alert in the inbox', async () => (await waiting.count()) === 1);
  const buttons = await page.locator('#inbox button').count();
  if (buttons !== 0) throw new Error(`a token that may only read was offered ${buttons} buttons to act on alerts`);
});
