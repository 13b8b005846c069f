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

// ---- Live updates: a banner says when any of the page's streams is away, and since when, so that what the page shows
// is never taken for current when it is not.

function liveUpdates() {
  const away = new Map();
  const banner = document.getElementById('connection');
  const listeners = [];
  const show = () => {
    if (away.size === 0) {
      banner.hidden = true;
      banner.textContent = '';
    } else {
      const since = new Date(Math.min(...[...away.values()].map(a => a.since)));
      const reason = [...away.values()].find(a => a.reason)?.reason;
      const ended = [...away.values()].some(a => a.ended);
      // Written only when it says something new: the banner is read out each time it changes.
      const text = `Live updates ${ended ? 'stopped' : 'paused'} since ${since.toLocaleTimeString()}: what this page shows may be out of date. `
        + (reason ?? 'Trying to reconnect…');
      if (banner.textContent !== text) banner.textContent = text;
      banner.hidden = false;
    }
    for (const listener of listeners) listener();
  };
  return {
    /** The onState callback of one stream, by name. */
    of: name => (state, reason) => {
      if (state === 'live') away.delete(name);
      else away.set(name, { since: away.get(name)?.since ?? Date.now(), reason, ended: state === 'ended' });
      show();
    },
    /** When live updates were last known whole: null while every stream is live. */
    pausedSince: () => (away.size === 0 ? null : new Date(Math.min(...[...away.values()].map(a => a.since)))),
    onChange: listener => listeners.push(listener),
  };
}

/** What a person is told when acknowledging or snoozing an alert failed: the alert stays as it was. */
function actionFailed(error, action, alert) {
  const verb = action === 'ack' ? 'acknowledge' : 'snooze';
  const what = `${alert.message} (${alert.patientId})`;
  if (!(error instanceof ApiError)) return `Could not reach the server to ${verb} ${what}: it is unchanged. Try again.`;
  switch (error.status) {
    case 401:
      return error.message;
    case 403:
      return `You may not ${verb} ${what}: your role, care team or sign-in does not allow it.`;
    case 404:
    case 409:
      return `Could not ${verb} ${what}: ${error.message}`;
    case 429:
      return `Too many requests; wait a moment and try again to ${verb} ${what}.`;
    default:
      return `Could not ${verb} ${what}: ${error.message}`;
  }
}

// ---- The cohort: every patient the person may read, the most urgent first, and the alerts waiting for someone.

async function showCohort() {
  document.getElementById('cohort').hidden = false;
  const rows = new Map();
  const live = liveUpdates();
  let alerts = [];
  let announced = null;
  // Patients taken off the page (no longer readable) and alerts seen cleared: events the streams still send of them
  // (each stream checks access on its own clock; a late event may follow a newer one) add nothing back.
  const removed = new Set();
  const cleared = new Set();
  // The latest event applied of each alert (events carry their patient's sequence, which orders an alert's events):
  // an older one, come late, is passed over.
  const lastSeq = new Map();
  // Where the keyboard was when an action began (its button is disabled meanwhile, and may lose the focus).
  let actionFocus = null;

  const alertItem = alert => element('li', { class: `alert ${alert.priority}`, 'data-alert': alert.alertId },
    element('span', { class: 'marks' }, priorityBadge(alert.priority), escalationBadge(alert)),
    element('a', { href: `/patients/${encodeURIComponent(alert.patientId)}`, text: alert.patientId }),
    element('span', { class: 'message', text: alert.message }),
    element('time', { datetime: alert.raisedAt, text: ago(alert.raisedAt) }),
    mayAct() ? element('span', { class: 'actions' },
      element('button', { type: 'button', 'data-action': 'ack', text: 'Acknowledge', 'aria-label': `Acknowledge: ${alert.message} (${alert.patientId})`, onclick: event => act(event, alert, 'ack', {}) }),
      element('button', { type: 'button', 'data-action': 'snooze', class: 'quiet', text: 'Snooze 15 min', 'aria-label': `Snooze 15 minutes: ${alert.message} (${alert.patientId})`, onclick: event => act(event, alert, 'snooze', { minutes: 15 }) }))
      : null);

  // Rebuilt on every change. The control that had the keyboard focus gets it back; when its alert has left the inbox
  // (acknowledged, snoozed, cleared), the same control of the alert now in its place does, or the inbox's heading.
  const renderInbox = () => {
    const focused = document.activeElement?.closest?.('#inbox li');
    const list = document.getElementById('inbox');
    const focusKey = focused ? { alertId: focused.dataset.alert, action: document.activeElement.dataset.action, index: [...list.children].indexOf(focused) } : actionFocus;
    actionFocus = null;
    const waiting = alerts.filter(a => a.status === 'active');
    list.replaceChildren(...waiting.map(alertItem));
    document.getElementById('inbox-count').textContent = `(${waiting.length})`;
    document.title = waiting.length > 0 ? `(${waiting.length}) Telemetry — patients` : 'Telemetry — patients';
    showInboxEmpty(waiting.length === 0);
    if (focusKey) {
      const same = list.querySelector(`li[data-alert="${CSS.escape(focusKey.alertId)}"] [data-action="${focusKey.action}"]`);
      const next = list.children[Math.min(focusKey.index, list.children.length - 1)]?.querySelector(`[data-action="${focusKey.action}"]`);
      (same ?? next ?? document.getElementById('inbox-title')).focus();
    }

    // An alert newly waiting is told (the status line is read out by screen readers), but for those listed at first.
    const ids = new Set(waiting.map(a => a.alertId));
    if (announced) {
      const fresh = waiting.filter(a => !announced.has(a.alertId));
      if (fresh.length === 1) say(`Alert waiting, ${fresh[0].priority} priority: ${fresh[0].message} (${fresh[0].patientId})`);
      else if (fresh.length > 1) say(`${fresh.length} more alerts waiting, the first: ${fresh[0].message} (${fresh[0].patientId})`);
    }
    announced = ids;
    orderRows();
  };

  // "No alerts waiting" is said only while the page is following them; otherwise as of when it last knew.
  const showInboxEmpty = empty => {
    const note = document.getElementById('inbox-empty');
    const since = live.pausedSince();
    note.hidden = !empty;
    note.textContent = since ? `No alerts waiting as of ${since.toLocaleTimeString()}; live updates are paused.` : 'No alerts waiting.';
  };
  live.onChange(() => showInboxEmpty(!alerts.some(a => a.status === 'active')));

  const act = async (event, alert, action, body) => {
    // Kept before the wait: the event's currentTarget is gone by the time the answer comes.
    const button = event.currentTarget;
    const item = button.closest('li');
    const focusKey = { alertId: alert.alertId, action, index: [...(item?.parentElement?.children ?? [])].indexOf(item) };
    button.disabled = true;
    try {
      const updated = await api(`/api/alerts/${encodeURIComponent(alert.alertId)}/${action}`, { method: 'POST', body });
      if (document.activeElement === document.body || document.activeElement === button) actionFocus = focusKey;
      apply(updated);
      say(action === 'ack' ? `Acknowledged: ${alert.message}` : `Snoozed for 15 minutes: ${alert.message}`);
    } catch (error) {
      button.disabled = false;
      say(actionFailed(error, action, alert), true);
      // Cleared or gone meanwhile: the inbox is read again, so it shows the alert as it now stands.
      if (error instanceof ApiError && (error.status === 404 || error.status === 409)) refreshAlerts().catch(failed);
    }
  };

  // An alert as it now stands, from an event or an action's answer: listed while open, dropped once cleared, in the
  // server's order (most urgent first, then newest), so that the inbox keeps one order between its readings.
  const apply = alert => {
    if (removed.has(alert.patientId)) {
      actionFocus = null;
      return;
    }

    if (alert.status === 'cleared') cleared.add(alert.alertId);
    alerts = alerts.filter(a => a.alertId !== alert.alertId);
    if (!cleared.has(alert.alertId)) alerts.push(alert);
    alerts.sort((a, b) => (priorities[b.priority] ?? 0) - (priorities[a.priority] ?? 0)
      || new Date(b.raisedAt) - new Date(a.raisedAt) || (a.alertId < b.alertId ? 1 : -1));
    renderInbox();
  };

  // The inbox is read whole when the stream (re)connects; events in between apply one by one. Events that come while
  // it is being read are applied after it, in order, so the list ends as the latest of them says.
  let refreshing = null;
  let again = false;
  let held = [];
  let inboxShown = false;
  const refreshAlerts = async () => {
    if (refreshing) {
      again = true;
      return refreshing;
    }

    refreshing = (async () => {
      do {
        again = false;
        const read = (await api('/api/alerts?status=open&limit=500')).filter(a => !removed.has(a.patientId));
        // Rebuilt only when it changed: a rebuild moves the focus back, which a screen reader reads out again.
        if (!inboxShown || JSON.stringify(read) !== JSON.stringify(alerts)) {
          alerts = read;
          inboxShown = true;
          renderInbox();
        }
      } while (again);
    })().finally(() => {
      refreshing = null;
      const waiting = held;
      held = [];
      for (const alert of waiting) apply(alert);
    });
    return refreshing;
  };
  const onAlertEvent = (name, event) => {
    if (name === 'reset') {
      rereadInbox();
    } else if (name === 'alert' && event?.alert) {
      if (event.seq <= (lastSeq.get(event.alert.alertId) ?? -Infinity)) return;
      lastSeq.set(event.alert.alertId, event.seq);
      if (refreshing) held.push(event.alert);
      else apply(event.alert);
    }
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

  // The last hour of heart rate, a point a minute: read once per row, then kept current from the live stream's minute
  // of each heart rate, redrawn at most every 30 seconds.
  const sparklineQueue = [];
  let sparklineReaders = 0;
  const readSparklines = async () => {
    sparklineReaders++;
    try {
      for (let next = sparklineQueue.shift(); next; next = sparklineQueue.shift()) {
        const [patientId, row] = next;
        try {
          const from = new Date(Date.now() - 3600_000).toISOString();
          const trend = await api(`/api/patients/${encodeURIComponent(patientId)}/trends?kind=heart_rate&resolution=1m&from=${encodeURIComponent(from)}`);
          for (const point of trend.points) if (!row.spark.has(point.start)) row.spark.set(point.start, point);
          drawSparkline(row);
        } catch {
          // A sparkline that cannot be read leaves its cell empty; the row still shows the latest values.
        }
      }
    } finally {
      sparklineReaders--;
    }
  };
  const queueSparkline = (patientId, row) => {
    sparklineQueue.push([patientId, row]);
    if (sparklineReaders < SparklinesAtOnce) readSparklines();
  };
  const drawSparkline = row => {
    const from = Date.now() - 3600_000;
    for (const start of row.spark.keys()) if (new Date(start).getTime() < from) row.spark.delete(start);
    const points = [...row.spark.values()].sort((a, b) => new Date(a.start) - new Date(b.start));
    row.sparkCell.setAttribute('aria-label', points.length ? `Heart rate last hour: ${points.length} minutes of readings` : 'No heart rate this hour');
    sparkline(row.sparkCell, points);
    row.sparkDirty = false;
  };
  const liveMinute = (row, vitals) => {
    const minute = vitals.find(v => v.kind === 'heart_rate')?.currentMinute;
    if (!minute) return;
    row.spark.set(minute.start, minute);
    row.sparkDirty = true;
  };
  // Every row, not only those with a new minute: the hour moves on, so a watch that stopped shows its trace ageing
  // out of the hour rather than the last one it sent as if it were current.
  setInterval(() => {
    for (const row of rows.values()) if (row.sparkDirty || row.spark.size > 0) drawSparkline(row);
  }, 30_000);

  // A row per patient; one the live stream brings later (a patient added to the care team) gets its row then, and
  // one it says is removed (no longer readable) loses it.
  const addRow = patient => {
    const vitals = element('div', { class: 'vitals' });
    const alertsCell = element('td');
    const sparkCell = element('td', { class: 'spark' });
    const row = element('tr', { 'data-patient': patient.patientId },
      element('th', { scope: 'row' }, element('a', { href: `/patients/${encodeURIComponent(patient.patientId)}`, text: patient.patientId })),
      alertsCell, element('td', {}, vitals), sparkCell);
    const entry = { row, vitals, alertsCell, sparkCell, spark: new Map(), sparkDirty: false };
    rows.set(patient.patientId, entry);
    document.querySelector('#patients tbody').append(row);
    showVitals(entry, patient.vitals);
    liveMinute(entry, patient.vitals);
    return entry;
  };
  const removeRow = patientId => {
    removed.add(patientId);
    rows.get(patientId)?.row.remove();
    rows.delete(patientId);
    alerts = alerts.filter(a => a.patientId !== patientId);
    renderInbox();
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

  // A read the page depends on after a reconnect (the inbox, the list of patients): until it succeeds the page counts
  // as paused under its own name (from when the stream dropped, for the inbox), and it is tried again, backing off, so
  // that a failed read never leaves a stale inbox saying "No alerts waiting" or a row that should have left.
  const retrying = (name, read) => {
    const state = live.of(name);
    let retry = null;
    const attempt = (delay = 1_000) => {
      clearTimeout(retry);
      retry = null;
      read().then(() => state('live'), error => {
        if (error instanceof ApiError && (error.status === 401 || error.status === 403)) {
          failed(error);
          return;
        }

        state('paused', `The ${name} could not be read again (${error.message}); trying again…`);
        retry = setTimeout(() => attempt(Math.min(delay * 2, 30_000)), delay);
      });
    };
    return { attempt, away: reason => state('paused', reason) };
  };
  const inbox = retrying('alert inbox', refreshAlerts);
  const rereadInbox = () => inbox.attempt();

  // The patients as the list reads them now: rows gone from it are removed, rows new to it added.
  let vitalsOpened = false;
  const resyncRows = async () => {
    const page = await api(`/api/patients?limit=${MaxListed}`);
    const listed = new Set(page.patients.map(p => p.patientId));
    for (const patientId of [...rows.keys()]) if (!listed.has(patientId)) removeRow(patientId);
    let added = false;
    for (const patient of page.patients) {
      if (rows.has(patient.patientId)) continue;
      removed.delete(patient.patientId);
      queueSparkline(patient.patientId, addRow(patient));
      added = true;
    }

    orderRows();
    if (added) rereadInbox();
  };

  const patientList = retrying('patient list', resyncRows);
  const alertsState = live.of('alerts');
  const stop = new AbortController();
  follow('/api/live/stream', {
    onEvent: (name, view) => {
      if (name === 'removed') {
        removeRow(view.patientId);
      } else if (name === 'vitals') {
        if (rows.has(view.patientId)) {
          const row = rows.get(view.patientId);
          showVitals(row, view.vitals);
          liveMinute(row, view.vitals);
        } else {
          // A patient added (or given back) to the person's care team: their alerts are read with the inbox at once
          // (the alert stream sends theirs only once its own access check has caught up).
          removed.delete(view.patientId);
          queueSparkline(view.patientId, addRow(view));
          orderRows();
          rereadInbox();
        }
      }
    },
    // The stream says `removed` only of patients dropped while it is open: after a reconnect the list is read again,
    // so a patient taken off the care team meanwhile leaves it rather than staying with frozen vitals.
    onOpen: () => {
      if (vitalsOpened) patientList.attempt();
      vitalsOpened = true;
    },
    onState: live.of('vitals'),
  }, stop.signal);
  follow('/api/alerts/stream', {
    // On every (re)connect the inbox is read whole, so nothing raised while the stream was away is missed; the stream
    // starts from now, so what was known of the events before (the alert log may have been restored meanwhile, its
    // numbers and alert ids used again) is forgotten.
    onOpen: () => {
      lastSeq.clear();
      cleared.clear();
      rereadInbox();
    },
    onEvent: onAlertEvent,
    // The inbox counts as away from when the stream dropped until it has been read again after the reconnect.
    onState: (state, reason) => {
      alertsState(state, reason);
      if (state !== 'live') inbox.away(reason);
    },
  }, stop.signal);
  setInterval(() => {
    for (const time of document.querySelectorAll('#patients time, #inbox time')) time.textContent = ago(time.getAttribute('datetime'));
  }, 10_000);

  // Read whole now and then besides: a safety net for an event the page could not place.
  setInterval(() => {
    if (!live.pausedSince()) refreshAlerts().catch(failed);
  }, 120_000);

  for (const [patientId, row] of rows) queueSparkline(patientId, row);
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

  const live = liveUpdates();
  const stop = new AbortController();
  follow(`${base}/live/stream`, {
    onEvent: (name, view) => {
      if (name === 'vitals') showLatest(view.vitals);
    },
    onState: live.of('vitals'),
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
  follow(`${base}/alerts/stream`, { onOpen: redrawSoon, onEvent: redrawSoon, onState: live.of('alerts') }, stop.signal);
  setInterval(() => {
    for (const time of document.querySelectorAll('#patient-latest time')) time.textContent = ago(time.getAttribute('datetime'));
  }, 10_000);

  // The charts end at the moment they were drawn: drawn again every minute (while the page is seen), so "24 hours" is
  // always the last 24 hours, and so the latest minutes are on them.
  setInterval(() => {
    if (document.visibilityState === 'visible' && !live.pausedSince()) draw().catch(failed);
  }, 60_000);
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
