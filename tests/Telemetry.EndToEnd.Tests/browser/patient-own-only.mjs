// A patient sees their own progress at /me, and is refused another patient's page.

import { run, signIn, env, base, screenshot, until } from './harness.mjs';

await run('patient-own-only', async page => {
  await signIn(page, '/me', env('PATIENT_TOKEN'));
  const steps = page.locator('#steps-words');
  await until('the steps in words', async () => (await steps.textContent())?.includes('steps'));
  if (!(await steps.textContent()).includes('goal')) throw new Error(`no goal in: ${await steps.textContent()}`);
  // Seven days of steps, today's under the goal: today is not over, so it is not counted as a day missed.
  if (!(await steps.textContent()).includes('on 4 of 6 days')) throw new Error(`today counted as a day missed: ${await steps.textContent()}`);
  await page.locator('#steps-chart canvas').first().waitFor();
  await page.locator('#weight-chart canvas').first().waitFor();
  await screenshot(page, 'patient-progress');

  // The same signed-in tab, opening another patient's page.
  await page.goto(`${base()}/patients/p-web-1`);
  const status = page.locator('#status');
  await until('the refusal', async () => (await status.textContent())?.includes('You may not see this'));
  if ((await page.locator('#charts canvas').count()) !== 0) throw new Error('another patient\'s chart was drawn');
  await screenshot(page, 'patient-refused');
}, /status of 403 .*\/api\/patients\/p-web-1\//);
