// A clinician opens a patient's trends, sees the heart rate chart with its alert threshold, and switches to 7 days.

import { run, signIn, env, screenshot, until } from './harness.mjs';

await run('clinician-trend', async page => {
  await signIn(page, '/', env('CLINICIAN_TOKEN'));
  await page.locator('tr[data-patient="p-web-1"] a').click();
  await page.waitForURL('**/patients/p-web-1');
  const chart = page.locator('figure.chart[data-kind="heart_rate"]');
  await chart.waitFor();
  await chart.locator('canvas').first().waitFor();
  const label = await chart.locator('[role="img"]').getAttribute('aria-label');
  if (!label?.includes('alert thresholds at 120')) throw new Error(`the chart does not show the 120 threshold: ${label}`);
  if (!(await page.locator('#patient-alerts').textContent())?.includes('High')) throw new Error('the raised alert is not listed');
  await screenshot(page, 'patient-trend-24h');

  // Hours without readings are a gap in the mean line, not a line across them (the chart's columns, as drawn).
  const columns = await page.evaluate(async () => {
    const { withGaps } = await import('/js/charts.js');
    const point = (start, mean) => ({ start, min: mean - 1, max: mean + 1, mean });
    return withGaps([point('2026-01-01T00:00:00Z', 2), point('2026-01-01T01:00:00Z', 3), point('2026-01-01T05:00:00Z', 5)], '1h');
  });
  if (JSON.stringify(columns[3]) !== '[2,3,null,5]') throw new Error(`no gap between 01:00 and 05:00: ${JSON.stringify(columns)}`);

  await page.getByRole('button', { name: '7 days' }).click();
  await until('the 7-day view', async () => (await page.getByRole('button', { name: '7 days' }).getAttribute('aria-pressed')) === 'true'
    && (await chart.locator('figcaption').textContent())?.includes('1h windows'));
  await screenshot(page, 'patient-trend-7d');
});
