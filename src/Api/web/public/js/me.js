// A patient's own progress at /me: steps against a goal, resting heart rate, sleep and weight, in words and charts.

import { requireSignIn, api, person, say, element, choice, latestOnly, ApiError } from './session.js';
import { dayBars, dayLine, colours } from './charts.js';

/** The page's sections, each a sentence and a chart: ids steps-words, steps-chart and so on. */
const Sections = [
  ['steps', 'Steps'],
  ['rhr', 'Resting heart rate'],
  ['sleep', 'Sleep'],
  ['weight', 'Weight'],
];

requireSignIn(() => {
  document.getElementById('progress').replaceChildren(...Sections.map(([id, title]) => element('section', { class: 'progress', 'aria-labelledby': `${id}-title` },
    element('h2', { id: `${id}-title`, text: title }),
    element('p', { id: `${id}-words`, class: 'words' }),
    element('div', { id: `${id}-chart`, role: 'img' }))));
  const me = person();
  const patientId = me.patients[0];
  if (!patientId) {
    say('This page shows a patient their own progress; your sign-in does not name a patient.', true);
    return;
  }

  let days = 30;
  // When the page was last drawn whole, and the day it was drawn on (see refresh below).
  let drawnAt = Date.now();
  let drawnDay = isoDay(new Date());
  const draw = latestOnly(current => show(current, patientId, days).then(() => {
    drawnAt = Date.now();
    drawnDay = isoDay(new Date());
  }, error => say(error instanceof ApiError && error.status === 403
    ? 'You may not see this record.'
    : `Something went wrong: ${error.message}`, true)));
  choice([...document.querySelectorAll('.ranges button')], button => {
    days = Number(button.dataset.days);
    draw();
  });

  draw();

  // Read again when the page is looked at after a while, and when the day changes: a page left open overnight would
  // otherwise call yesterday "today", and miss the steps walked since. A read that failed (a laptop waking offline) is
  // tried again at the next minute.
  const refresh = () => {
    if (document.visibilityState !== 'visible') return;
    if (isoDay(new Date()) !== drawnDay || Date.now() - drawnAt >= 5 * 60_000) draw();
  };
  document.addEventListener('visibilitychange', refresh);
  setInterval(refresh, 60_000);
}, 'dotnet run --project src/Api -- token --role patient --patient p-001');

/** The calendar day of date where the browser is, as the server's time zone parameter counts days. */
function isoDay(date) {
  const pad = n => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

function number(value, digits = 0) {
  return value.toLocaleString(undefined, { maximumFractionDigits: digits, minimumFractionDigits: digits });
}

async function show(current, patientId, days) {
  const timeZone = Intl.DateTimeFormat().resolvedOptions().timeZone || 'UTC';
  const to = new Date();
  // Calendar days back, not 24-hour steps: a week across a clock change is still seven days.
  const from = new Date(to.getFullYear(), to.getMonth(), to.getDate() - (days - 1));
  const summary = await api(`/api/patients/${encodeURIComponent(patientId)}/daily?from=${isoDay(from)}&to=${isoDay(to)}&timeZone=${encodeURIComponent(timeZone)}`);
  if (!current()) return;
  const dates = summary.days.map(d => d.date);
  const known = key => summary.days.filter(d => d[key] !== null && d[key] !== undefined);

  // Steps: the latest day with steps, how many days met the goal. Today is not over: it counts once its goal is met.
  const today = isoDay(new Date());
  const stepDays = known('steps');
  const judged = stepDays.filter(d => d.date !== today || d.stepsGoalMet);
  const met = judged.filter(d => d.stepsGoalMet).length;
  const latestSteps = stepDays[stepDays.length - 1];
  words('steps-words', stepDays.length === 0
    ? 'No steps recorded in this period yet.'
    : (latestSteps.date === today
      ? `Today you have walked ${number(latestSteps.steps)} steps so far${latestSteps.stepsGoalMet ? ', meeting your goal' : ''}. `
      : `On ${dayName(latestSteps.date)} you walked ${number(latestSteps.steps)} steps${latestSteps.stepsGoalMet ? ', meeting your goal' : ''}. `)
      + (judged.length === 0
        ? `Your goal is ${number(summary.stepsGoal)} steps a day.`
        : `You met your goal of ${number(summary.stepsGoal)} steps on ${met} of ${judged.length} days.`));
  chart('steps-chart', `Steps per day against a goal of ${summary.stepsGoal}`, () =>
    dayBars(el('steps-chart'), { days: dates, values: summary.days.map(d => d.steps), unit: 'steps', goal: summary.stepsGoal }));

  // Resting heart rate: its trend from the first to the last week.
  const rhr = known('restingHeartRate');
  words('rhr-words', rhr.length === 0
    ? 'No resting heart rate recorded in this period yet.'
    : `Your resting heart rate was ${number(rhr[rhr.length - 1].restingHeartRate)} beats per minute on ${dayName(rhr[rhr.length - 1].date)}`
      + (rhr.length > 1 ? `, ${trendWords(rhr[0].restingHeartRate, rhr[rhr.length - 1].restingHeartRate, 'beats per minute', 0)} since ${dayName(rhr[0].date)}.` : '.'));
  chart('rhr-chart', 'Resting heart rate per day, in beats per minute', () =>
    dayLine(el('rhr-chart'), { days: dates, values: summary.days.map(d => d.restingHeartRate), unit: 'beats/min', colour: colours.vermillion }));

  // Sleep: the average night.
  const nights = known('sleepHours');
  const average = nights.reduce((sum, d) => sum + d.sleepHours, 0) / (nights.length || 1);
  words('sleep-words', nights.length === 0
    ? 'No sleep recorded in this period yet.'
    : `You slept ${number(nights[nights.length - 1].sleepHours, 1)} hours on the night ending ${dayName(nights[nights.length - 1].date)}, and ${number(average, 1)} hours a night on average.`);
  chart('sleep-chart', 'Hours of sleep per night', () =>
    dayBars(el('sleep-chart'), { days: dates, values: summary.days.map(d => d.sleepHours), unit: 'hours', colour: colours.purple }));

  // Weight: the latest and the change.
  const weights = known('weightKg');
  words('weight-words', weights.length === 0
    ? 'No weight recorded in this period yet.'
    : `You weighed ${number(weights[weights.length - 1].weightKg, 1)} kg on ${dayName(weights[weights.length - 1].date)}`
      + (weights.length > 1 ? `, ${trendWords(weights[0].weightKg, weights[weights.length - 1].weightKg, 'kg', 1)} since ${dayName(weights[0].date)}.` : '.'));
  chart('weight-chart', 'Weight per day, in kilograms', () =>
    dayLine(el('weight-chart'), { days: dates, values: summary.days.map(d => d.weightKg), unit: 'kg', colour: colours.green }));

  say(`Your last ${days} days.`);
}

function el(id) {
  return document.getElementById(id);
}

function words(id, text) {
  el(id).textContent = text;
}

function chart(id, label, draw) {
  el(id).setAttribute('aria-label', label);
  draw();
}

function dayName(date) {
  return new Date(`${date}T12:00:00`).toLocaleDateString(undefined, { weekday: 'long', day: 'numeric', month: 'long' });
}

function trendWords(first, last, unit, digits) {
  const change = last - first;
  if (Math.abs(change) < 10 ** -digits) return 'unchanged';
  return `${change > 0 ? 'up' : 'down'} ${number(Math.abs(change), digits)} ${unit}`;
}
