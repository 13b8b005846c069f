// A patient sees their own progress at /me, read again when left open a while, and is refused another patient's page.

import { run, signIn, env, base, screenshot, until } from './harness.mjs';

await run('patient-own-only', async page => {
  // The page's clock, to move it on: the progress is read again when it has been open a while.
  await page.clock.install();
  let dailyReads = 0;
  page.on('request', request => {
    if (request.url().includes('/daily?')) dailyReads++;
  });
  await signIn(page, '/me', env('PATIENT_TOKEN'));
  const steps = page.locator('#steps-words');
  await until('the steps in words', async () => (await steps.textContent())?.includes('steps'));
  if (!(await steps.textContent()).includes('goal')) throw new Error(`no goal in: ${await steps.textContent()}`);
  // Seven days of steps, today's under the goal: today is not over, so it is not counted as a day missed.
  if (!(await steps.textContent()).includes('on 4 of 6 days')) throw new Error(`today counted as a day missed: ${await steps.textContent()}`);
  await page.locator('#steps-chart canvas').first().waitFor();
  await page.locator('#weight-chart canvas').first().waitFor();
  await screenshot(page, 'patient-progress');

  // Left open for six minutes (a patient coming back to the tab): read again, so "today" stays today.
  const readsBefore = dailyReads;
  await page.clock.fastForward('06:00');
  await until('the progress to be read again', async () => dailyReads > readsBefore);

  // The same signed-in tab, opening another patient's page.
  await page.goto(`${base()}/patients/p-web-1`);
  const status = page.locator('#status');
  await until('the refusal', async () => (await status.textContent())?.includes('You may not see this'));
  if ((await page.locator('#charts canvas').count()) !== 0) throw new Error('another patient\'s chart was drawn');
  await screenshot(page, 'patient-refused');
}, /status of 403 .*\/api\/patients\/p-web-1\//);
