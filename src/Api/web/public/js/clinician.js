// The clinician's pages: the patient list with the alert inbox at /, and one patient's trends at /patients/{id}.

import { requireSignIn, api, follow, element, say, describe, ago, person, latestValue, choice, latestOnly, ApiError } from './session.js';
import { sparkline, trendChart, destroyCharts } from './charts.js';

const priorities = { high: 3, medium: 2, low: 1 };
const priorityMarks = { high: '▲▲▲ High', medium: '▲▲ Medium', low: '▲ Low' };

/** The most patients the list shows: as many as one live stream follows (the server's limit), so no row goes stale. */
const MaxListed = 500;

/** Sparklines fetched at once: a long list would otherwise meet the API's rate limit. */
const SparklinesAtOnce = 6;

requireSignIn(() => {
  const match = location.pathname.match(/^\/patients\/([^/]+)$/);
  let patientId = null;
  try {
    patientId = match ? decodeURIComponent(match[1]) : null;
  } catch {
    say('That address does not name a patient.', true);
    return;
  }

  if (patientId) showPatient(patientId);
  else showCohort();
}, 'dotnet run --project src/Api -- token --role clinician --care-team ward-3');

function priorityBadge(priority) {
  return element('span', { class: `priority ${priority}`, text: priorityMarks[priority] ?? priority });
}

/** How often an alert has escalated unanswered, when it has: nothing otherwise. */
function escalationBadge(alert) {
  return alert.escalationLevel > 0
    ? element('span', { class: 'escalated', text: `Escalated ${alert.escalationLevel === 1 ? 'once' : `${alert.escalationLevel} times`}` })
    : null;
}

/** Where an alert stands, and who put it there: what a clinician taking over needs to read. */
function alertState(alert) {
  const at = time => new Date(time).toLocaleString();
  switch (alert.status) {
    case 'acknowledged':
      return `acknowledged by ${alert.acknowledgedBy ?? 'someone'}${alert.acknowledgedAt ? `, ${at(alert.acknowledgedAt)}` : ''}`;
    case 'snoozed':
      return `snoozed${alert.snoozedBy ? ` by ${alert.snoozedBy}` : ''}${alert.snoozedUntil ? ` until ${at(alert.snoozedUntil)}` : ''}`;
    case 'cleared':
      return `cleared${alert.clearedAt ? ` ${at(alert.clearedAt)}` : ''}${alert.clearReason ? ` (${alert.clearReason})` : ''}${alert.acknowledgedBy ? `, acknowledged by ${alert.acknowledgedBy}` : ''}`;
    default:
      return alert.escalationLevel > 0 ? `active, escalated ${alert.escalationLevel === 1 ? 'once' : `${alert.escalationLevel} times`}` : 'active';
  }
}

function failed(error) {
  say(error instanceof ApiError && error.status === 403
    ? 'You may not see this. Your role or care team does not include it.'
    : `Something went wrong: ${error.message}`, true);
}

/**
 * Who may act on alerts: admins and clinicians (a patient reads only), with a token whose SMART scopes, if it carries
 * any, write Observations (user/Observation.cu, v1 .write, or *): the server refuses the others' actions.
 */
function mayAct() {
  const { roles, scopes } = person();
  const smart = scopes.filter(scope => /^(patient|user|system)\//.test(scope));
  const writes = smart.some(scope => /^(patient|user|system)\/(Observation|\*)\.(write|\*|[cruds]*[cud][cruds]*)$/.test(scope));
  return (roles.includes('admin') || roles.includes('clinician')) && (smart.length === 0 || writes);
}

// ---- The cohort: every patient the person may read, the most urgent first, and the alerts waiting for someone.

async function showCohort() {
  document.getElementById('cohort').hidden = false;
  const rows = new Map();
  let alerts = [];

  const alertItem = alert => element('li', { class: `alert ${alert.priority}`, 'data-alert': alert.alertId },
    element('span', { class: 'marks' }, priorityBadge(alert.priority), escalationBadge(alert)),
    element('a', { href: `/patients/${encodeURIComponent(alert.patientId)}`, text: alert.patientId }),
    element('span', { class: 'message', text: alert.message }),
    element('time', { datetime: alert.raisedAt, text: ago(alert.raisedAt) }),
    mayAct() ? element('span', { class: 'actions' },
      element('button', { type: 'button', 'data-action': 'ack', text: 'Acknowledge', 'aria-label': `Acknowledge: ${alert.message} (${alert.patientId})`, onclick: event => act(event, alert, 'ack', {}) }),
      element('button', { type: 'button', 'data-action': 'snooze', class: 'quiet', text: 'Snooze 15 min', 'aria-label': `Snooze 15 minutes: ${alert.message} (${alert.patientId})`, onclick: event => act(event, alert, 'snooze', { minutes: 15 }) }))
      : null);

  // Rebuilt on every change; the control that had the keyboard focus gets it back.
  const renderInbox = () => {
    const focused = document.activeElement?.closest?.('#inbox li');
    const focusKey = focused ? [focused.dataset.alert, document.activeElement.dataset.action] : null;
    const waiting = alerts.filter(a => a.status === 'active');
    const list = document.getElementById('inbox');
    list.replaceChildren(...waiting.map(alertItem));
    document.getElementById('inbox-count').textContent = `(${waiting.length})`;
    document.getElementById('inbox-empty').hidden = waiting.length > 0;
    if (focusKey) {
      list.querySelector(`li[data-alert="${CSS.escape(focusKey[0])}"] [data-action="${focusKey[1]}"]`)?.focus();
    }

    orderRows();
  };

  const act = async (event, alert, action, body) => {
    event.currentTarget.disabled = true;
    try {
      const updated = await api(`/api/alerts/${encodeURIComponent(alert.alertId)}/${action}`, { method: 'POST', body });
      alerts = alerts.map(a => (a.alertId === updated.alertId ? updated : a));
      renderInbox();
      say(action === 'ack' ? `Acknowledged: ${alert.message}` : `Snoozed for 15 minutes: ${alert.message}`);
    } catch (error) {
      event.currentTarget.disabled = false;
      failed(error);
    }
  };

  // One refresh at a time; changes that arrive meanwhile ask for one more afterwards.
  let refreshing = null;
  let again = false;
  const refreshAlerts = async () => {
    if (refreshing) {
      again = true;
      return refreshing;
    }

    refreshing = (async () => {
      do {
        again = false;
        alerts = await api('/api/alerts?status=open&limit=500');
        renderInbox();
      } while (again);
    })().finally(() => {
      refreshing = null;
    });
    return refreshing;
  };

  const orderRows = () => {
    const tbody = document.querySelector('#patients tbody');
    const rank = patientId => Math.max(0, ...alerts.filter(a => a.patientId === patientId).map(a => priorities[a.priority] ?? 0));
    const ordered = [...rows.keys()].sort((a, b) => rank(b) - rank(a) || a.localeCompare(b));
    ordered.forEach((patientId, index) => {
      const row = rows.get(patientId);
      const open = alerts.filter(a => a.patientId === patientId).sort((a, b) => (priorities[b.priority] ?? 0) - (priorities[a.priority] ?? 0));
      row.alertsCell.replaceChildren(open.length === 0
        ? element('span', { class: 'none', text: 'none' })
        : element('span', {}, priorityBadge(open[0].priority), ` ${open.length} open`));
      if (tbody.children[index] !== row.row) tbody.insertBefore(row.row, tbody.children[index] ?? null);
    });
  };

  const showVitals = (row, vitals) => row.vitals.replaceChildren(...vitals.map(v => latestValue('span', 'vital', v)));

  // A row per patient; one the live stream brings later (a patient added to the care team) gets its row then.
  const addRow = patient => {
    const vitals = element('div', { class: 'vitals' });
    const alertsCell = element('td');
    const sparkCell = element('td', { class: 'spark' });
    const row = element('tr', { 'data-patient': patient.patientId },
      element('th', { scope: 'row' }, element('a', { href: `/patients/${encodeURIComponent(patient.patientId)}`, text: patient.patientId })),
      alertsCell, element('td', {}, vitals), sparkCell);
    rows.set(patient.patientId, { row, vitals, alertsCell, sparkCell });
    document.querySelector('#patients tbody').append(row);
    showVitals(rows.get(patient.patientId), patient.vitals);
  };

  try {
    let patients = [];
    let more = false;
    await Promise.all([(async () => {
      const page = await api(`/api/patients?limit=${MaxListed}`);
      patients = page.patients;
      more = Boolean(page.next);
    })(), refreshAlerts()]);

    for (const patient of patients) addRow(patient);
    orderRows();
    say(patients.length === 0 ? 'No patients to show yet.'
      : more ? `The first ${patients.length} patients by id, followed live: there are more than one dashboard follows. Narrow it by care team.`
      : `${patients.length} patients.`);
  } catch (error) {
    failed(error);
    return;
  }

  const stop = new AbortController();
  follow('/api/live/stream', {
    onEvent: (name, view) => {
      if (name !== 'vitals') return;
      if (rows.has(view.patientId)) {
        showVitals(rows.get(view.patientId), view.vitals);
      } else {
        addRow(view);
        orderRows();
      }
    },
  }, stop.signal);
  follow('/api/alerts/stream', {
    // On every (re)connect the inbox is read whole, so nothing raised while the stream was away is missed.
    onOpen: () => refreshAlerts().catch(failed),
    onEvent: () => refreshAlerts().catch(failed),
  }, stop.signal);
  setInterval(() => {
    for (const time of document.querySelectorAll('#patients time, #inbox time')) time.textContent = ago(time.getAttribute('datetime'));
  }, 10_000);

  const from = new Date(Date.now() - 3600_000).toISOString();
  const waiting = [...rows.entries()];
  await Promise.all(Array.from({ length: SparklinesAtOnce }, async () => {
    for (let next = waiting.shift(); next; next = waiting.shift()) {
      const [patientId, row] = next;
      try {
        const trend = await api(`/api/patients/${encodeURIComponent(patientId)}/trends?kind=heart_rate&resolution=1m&from=${encodeURIComponent(from)}`);
        row.sparkCell.setAttribute('aria-label', trend.points.length ? `Heart rate last hour: ${trend.points.length} minutes of readings` : 'No heart rate this hour');
        sparkline(row.sparkCell, trend.points);
      } catch {
        // A sparkline that cannot be drawn leaves its cell empty; the row still shows the latest values.
      }
    }
  }));
}

// ---- One patient: latest values, trends over 24 hours, 7 days or 30 days, thresholds and alerts.

async function showPatient(patientId) {
  document.getElementById('patient').hidden = false;
  document.getElementById('patient-title').textContent = `Patient ${patientId}`;
  document.title = `Telemetry — ${patientId}`;
  const base = `/api/patients/${encodeURIComponent(patientId)}`;
  const ranges = { '24h': 1, '7d': 7, '30d': 30 };
  let range = '24h';

  const showLatest = vitals =>
    document.getElementById('patient-latest').replaceChildren(...vitals.map(v => latestValue('div', 'tile', v)));

  const draw = latestOnly(async current => {
    const to = new Date();
    const from = new Date(to.getTime() - ranges[range] * 86400_000);
    const window = `from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(to.toISOString())}`;
    const [live, rules, inRange, open] = await Promise.all([
      api(`${base}/live`),
      api(`${base}/alert-rules`),
      api(`${base}/alerts?status=all&limit=500&${window}`),
      // An alert raised before the range and still open is still the patient's: listed whatever the range.
      api(`${base}/alerts?status=open&limit=500`),
    ]);
    const history = [...new Map([...open, ...inRange].map(a => [a.alertId, a])).values()]
      .sort((a, b) => new Date(b.triggeredAt) - new Date(a.triggeredAt));
    const kinds = live.vitals.map(v => v.kind);
    const trends = kinds.length === 0 ? null : await api(`${base}/trends?${window}&${kinds.map(k => `kind=${encodeURIComponent(k)}`).join('&')}`);
    if (!current()) return;

    showLatest(live.vitals);
    const charts = document.getElementById('charts');
    destroyCharts(charts);
    charts.replaceChildren();
    if (!trends) {
      charts.append(element('p', { class: 'empty', text: 'No readings yet.' }));
    } else {
      for (const trend of trends.series ?? [trends]) {
        const vital = describe(trend.kind, trend.unit);
        // A window of steps or sleep is its total: drawn as one line of sums, not the mean of its readings.
        const points = vital.cumulative ? trend.points.map(p => ({ ...p, mean: p.sum, min: p.sum, max: p.sum })) : trend.points;
        const thresholds = rules.rules
          .filter(rule => rule.type === 'threshold' && rule.kind === trend.kind && rule.level !== undefined && rule.level !== null)
          .map(rule => ({ level: rule.level, label: rule.direction === 'below' ? 'alert below' : 'alert above' }));
        const markers = history.filter(a => a.kind === trend.kind && new Date(a.triggeredAt) >= from).map(a => ({ time: a.triggeredAt }));
        const canvas = element('div', { role: 'img', 'aria-label': summary(vital, points, thresholds, markers.length) });
        charts.append(element('figure', { class: 'chart', 'data-kind': trend.kind },
          element('figcaption', { text: `${vital.label} (${vital.unit}), ${trend.resolution} windows` }), canvas));
        if (points.length > 0) trendChart(canvas, { points, resolution: trend.resolution, unit: vital.unit, from, to, thresholds, markers });
        else canvas.append(element('p', { class: 'empty', text: 'No readings in this range.' }));
      }
    }

    document.getElementById('patient-alerts').replaceChildren(...(history.length === 0
      ? [element('li', { class: 'empty', text: 'No alerts in this range.' })]
      : history.map(a => element('li', { class: `alert ${a.priority}` },
        priorityBadge(a.priority),
        element('span', { class: 'message', text: a.message }),
        element('span', { class: 'state', text: alertState(a) }),
        element('time', { datetime: a.triggeredAt, text: new Date(a.triggeredAt).toLocaleString() })))));
  });

  choice([...document.querySelectorAll('.ranges button')], button => {
    range = button.dataset.range;
    draw().catch(failed);
  });

  try {
    await draw();
    say(`Showing ${patientId}.`);
  } catch (error) {
    failed(error);
    return;
  }

  const stop = new AbortController();
  follow(`${base}/live/stream`, {
    onEvent: (name, view) => {
      if (name === 'vitals') showLatest(view.vitals);
    },
  }, stop.signal);
  // An alert raised, cleared or acknowledged while the page is open is listed (and marked on its chart) as it comes;
  // each time the stream opens the page is read again, so nothing raised before it was following is missed. Events
  // that come together (an alert flapping, several rules at once) are read in one go, half a second after the first.
  let redraw = null;
  const redrawSoon = () => {
    redraw ??= setTimeout(() => {
      redraw = null;
      draw().catch(failed);
    }, 500);
  };
  follow(`${base}/alerts/stream`, { onOpen: redrawSoon, onEvent: redrawSoon }, stop.signal);
  setInterval(() => {
    for (const time of document.querySelectorAll('#patient-latest time')) time.textContent = ago(time.getAttribute('datetime'));
  }, 10_000);
}

function summary(vital, points, thresholds, alertCount) {
  if (points.length === 0) return `${vital.label}: no readings in this range.`;
  const low = Math.min(...points.map(p => p.min));
  const high = Math.max(...points.map(p => p.max));
  const last = points[points.length - 1];
  return `${vital.label}: from ${low.toFixed(vital.digits)} to ${high.toFixed(vital.digits)} ${vital.unit}; latest ${vital.cumulative ? 'total' : 'mean'} ${last.mean.toFixed(vital.digits)} ${vital.unit}`
    + (thresholds.length ? `; alert thresholds at ${thresholds.map(t => t.level).join(', ')} ${vital.unit}` : '')
    + (alertCount ? `; ${alertCount} alerts raised.` : '.');
}
