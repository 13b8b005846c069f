// Signing in, calling the API with the person's token, reading server-sent events, and showing values with units.

const TokenKey = 'telemetry.token';

/** The token this tab signed in with (kept for the tab only), or null. */
export function token() {
  return sessionStorage.getItem(TokenKey);
}

export function signOut() {
  sessionStorage.removeItem(TokenKey);
  location.reload();
}

/** Who the token says the person is: a JWT's claims, or the admin token's fixed ones. */
export function person() {
  const value = token();
  if (!value) return null;
  const parts = value.split('.');
  if (parts.length !== 3) return { sub: 'admin', roles: ['admin'], patients: [], scopes: [] };
  try {
    const json = atob(parts[1].replace(/-/g, '+').replace(/_/g, '/'));
    const claims = JSON.parse(json);
    const list = v => (v === undefined ? [] : Array.isArray(v) ? v : [v]);
    const scopes = list(claims.scope).flatMap(scope => String(scope).split(' ')).filter(Boolean);
    return { sub: claims.sub ?? '(unknown)', roles: list(claims.role), patients: list(claims.patient), scopes };
  } catch {
    return { sub: '(unreadable token)', roles: [], patients: [], scopes: [] };
  }
}

/**
 * Shows a sign-in form in place of the page until a token is given, then calls start(). A token is pasted: one from
 * the organisation's sign-in, or on a local server a development token (`example` shows the command for one).
 */
export function requireSignIn(start, example) {
  const slot = document.getElementById('sign-in');
  const app = document.getElementById('app');
  if (token()) {
    slot.hidden = true;
    app.hidden = false;
    const who = document.getElementById('who');
    if (who) who.textContent = `Signed in as ${person().sub}`;
    document.getElementById('sign-out')?.addEventListener('click', signOut);
    start();
    return;
  }

  const field = element('textarea', { id: 'token', name: 'token', rows: 4, autocomplete: 'off', spellcheck: 'false', required: true });
  const form = element('form', { class: 'sign-in' },
    element('h2', { text: 'Sign in' }),
    element('label', { for: 'token', text: 'Your access token' }),
    field,
    element('p', { class: 'hint' }, 'Paste the token from your organisation\'s sign-in. On a local server, mint one with ',
      element('code', { text: example }), '.'),
    element('button', { type: 'submit', text: 'Sign in' }));
  form.addEventListener('submit', event => {
    event.preventDefault();
    const value = field.value.trim();
    if (!value) return;
    sessionStorage.setItem(TokenKey, value);
    location.reload();
  });
  document.getElementById('sign-out').hidden = true;
  app.hidden = true;
  slot.replaceChildren(form);
  slot.hidden = false;
  field.focus();
}

/** What a person is told when the server no longer takes their sign-in. */
const SignInInvalid = 'Your sign-in is no longer valid; reload the page to sign in again.';

/** An API answer that was not a success: its status and the problem's title and detail. */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `the server answered ${status}`);
    this.status = status;
  }
}

/** Calls the API with the person's token; JSON in and out. A refused token signs the tab out. */
export async function api(path, { method = 'GET', body } = {}) {
  const current = token();
  if (!current) throw new ApiError(401, { detail: 'You are signed out; reload the page to sign in again.' });
  const response = await fetch(path, {
    method,
    headers: { Authorization: `Bearer ${current}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  if (response.status === 401) {
    sessionStorage.removeItem(TokenKey);
    throw new ApiError(401, { detail: SignInInvalid });
  }

  const text = await response.text();
  let json = null;
  try {
    json = text ? JSON.parse(text) : null;
  } catch {
    // Not JSON: a proxy's error page, say. The status tells what happened.
  }

  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/** A stream silent this long is taken for lost and opened again: the server sends at least a comment every 15 s. */
const StreamSilenceMs = 35_000;

/**
 * Follows a server-sent event stream with the person's token (EventSource cannot send one): onOpen() each time the
 * stream (re)connects, so the page can fetch what it may have missed, and onEvent(name, data) for each event.
 * onState(state, reason) says where the stream stands: 'live' once open; 'retrying' while it is away (it tries again
 * every 2 s, every 10 s when the server says too many are open); 'ended' when it stops for good, with why: the server
 * refused the token or the access, or ended the stream because the token expired or the access was withdrawn. A stream
 * silent for longer than the server's keep-alives allow (a network change or a laptop's sleep may drop a connection
 * with no error) is opened again. Stops when signal aborts.
 */
export async function follow(path, { onOpen = () => {}, onEvent, onState = () => {} }, signal) {
  while (!signal?.aborted && token()) {
    const connection = new AbortController();
    const abort = () => connection.abort();
    signal?.addEventListener('abort', abort, { once: true });
    let silence = null;
    const heard = () => {
      clearTimeout(silence);
      silence = setTimeout(abort, StreamSilenceMs);
    };
    let reader = null;
    let throttled = false;
    try {
      heard();
      const response = await fetch(path, { headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' }, signal: connection.signal });
      if (response.status === 401) {
        onState('ended', SignInInvalid);
        return;
      }
      if (response.status === 403) {
        onState('ended', endings.revoked);
        return;
      }
      if (response.status === 429) {
        throttled = true;
        onState('retrying', 'Too many live views are open with your sign-in; close another tab or window.');
        throw new ApiError(429, null);
      }
      if (!response.ok) throw new ApiError(response.status, null);
      reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      onOpen();
      onState('live');
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        heard();
        // Lines may end in CRLF, LF or CR; a CR at the end of a chunk may be half of a CRLF, so it waits.
        buffer += value;
        const keep = buffer.endsWith('\r') ? 1 : 0;
        const ready = buffer.slice(0, buffer.length - keep).replace(/\r\n?/g, '\n');
        buffer = ready + buffer.slice(buffer.length - keep);
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const ended = dispatch(buffer.slice(0, end), onEvent);
          buffer = buffer.slice(end + 2);
          if (ended) {
            onState('ended', ended);
            return;
          }
        }
      }
    } catch {
      if (signal?.aborted) return;
    } finally {
      clearTimeout(silence);
      signal?.removeEventListener('abort', abort);
      reader?.cancel().catch(() => {});
    }
    if (signal?.aborted) return;
    if (!throttled) onState('retrying');
    await new Promise(resolve => setTimeout(resolve, throttled ? 10_000 : 2000));
  }

  // Signed out meanwhile (an API call's answer said the sign-in is no longer valid): the stream stops for good.
  if (!signal?.aborted && !token()) onState('ended', SignInInvalid);
}

/** The events that end a stream, and what each tells the person. */
const endings = {
  expired: 'Your sign-in has expired; reload the page to sign in again.',
  revoked: 'You may no longer see this; your role or care team has changed.',
};

/**
 * One event block: its name (default "message") and its data lines, as JSON; a bad event is skipped, not fatal. Returns
 * what to tell the person when the event ends the stream.
 */
function dispatch(block, onEvent) {
  let name = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'event') name = value;
    else if (field === 'data') data.push(value);
  }

  if (endings[name]) return endings[name];
  if (data.length === 0) return null;
  try {
    onEvent(name, JSON.parse(data.join('\n')));
  } catch (error) {
    console.warn(`skipped a ${name} event: ${error.message}`);
  }
  return null;
}

/** How each vital is named and in which unit it is shown (the API's UCUM unit, made readable). */
export const vitals = {
  heart_rate: { label: 'Heart rate', unit: 'beats/min', digits: 0 },
  resting_heart_rate: { label: 'Resting heart rate', unit: 'beats/min', digits: 0 },
  respiratory_rate: { label: 'Respiratory rate', unit: 'breaths/min', digits: 0 },
  spo2: { label: 'SpO₂', unit: '%', digits: 0 },
  body_temperature: { label: 'Temperature', unit: '°C', digits: 1 },
  systolic_bp: { label: 'Systolic BP', unit: 'mmHg', digits: 0 },
  diastolic_bp: { label: 'Diastolic BP', unit: 'mmHg', digits: 0 },
  steps: { label: 'Steps', unit: 'steps', digits: 0, cumulative: true },
  body_weight: { label: 'Weight', unit: 'kg', digits: 1 },
  blood_glucose: { label: 'Blood glucose', unit: 'mg/dL', digits: 0 },
  sleep_duration: { label: 'Sleep', unit: 'h', digits: 1, cumulative: true },
};

/** How a vital is shown; a kind this page does not know keeps the unit the API gave. */
export function describe(kind, unit = '') {
  return vitals[kind] ?? { label: kind, unit, digits: 1 };
}

/** A value with its unit, as a person reads it: "72 beats/min". */
export function withUnit(kind, value, unit) {
  const vital = describe(kind, unit);
  const number = Number(value).toLocaleString(undefined, { minimumFractionDigits: vital.digits, maximumFractionDigits: vital.digits });
  return `${number} ${vital.unit}`.trim();
}

/** How long ago, in words: "just now", "4 min ago", "3 h ago". */
export function ago(time, now = Date.now()) {
  const seconds = Math.max(0, Math.round((now - new Date(time).getTime()) / 1000));
  if (seconds < 10) return 'just now';
  if (seconds < 60) return `${seconds} s ago`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.round(seconds / 3600)} h ago`;
  return `${Math.round(seconds / 86400)} d ago`;
}

/** Shows a message in the page's status line (read out by screen readers). */
export function say(text, isError = false) {
  const status = document.getElementById('status');
  if (!status) return;
  status.textContent = text;
  status.classList.toggle('error', isError);
}

/**
 * A vital's latest value: its name, the value with its unit, and how old it is. A reading of steps or sleep is what
 * was added since the one before (a day's total is the sum of its readings), so it is named as the latest reading.
 */
export function latestValue(tag, className, vital) {
  const described = describe(vital.kind, vital.unit);
  return element(tag, { class: className, 'data-kind': vital.kind },
    element('span', { class: 'label', text: described.cumulative ? `${described.label}, latest reading` : described.label }),
    element('span', { class: 'value', text: withUnit(vital.kind, vital.value, vital.unit) }),
    element('time', { datetime: vital.time, text: ago(vital.time) }));
}

/** Makes a group of buttons a one-of choice (aria-pressed), calling onChoose with the chosen button. */
export function choice(buttons, onChoose) {
  for (const button of buttons) {
    button.addEventListener('click', () => {
      for (const other of buttons) other.setAttribute('aria-pressed', String(other === button));
      onChoose(button);
    });
  }
}

/** Runs draw() so that only the latest call's result is shown: each call gets a generation, stale ones are ignored. */
export function latestOnly(draw) {
  let generation = 0;
  return (...args) => {
    const mine = ++generation;
    return draw(() => mine === generation, ...args);
  };
}

/** Creates an element with attributes and children. */
export function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : value);
  }
  node.append(...children.filter(child => child !== null && child !== undefined));
  return node;
}
