// The gridlink dashboard: a hash router over pages built with DOM calls.
// Sign in with an API token; /api/v1/me says which actions the role allows.

import { api, ApiError, live, query, setToken, token } from './api.js';
import { formatNumber, seriesChart, timeline } from './chart.js';

const QUANTITIES = ['active_power', 'reactive_power', 'apparent_power', 'voltage', 'current',
  'frequency', 'power_factor', 'energy_import', 'energy_export'];
const PHASES = ['total', 'L1', 'L2', 'L3', 'N', 'L1L2', 'L2L3', 'L3L1'];
const PAYLOAD_TYPES = ['SIMPLE', 'IMPORT_CAPACITY_LIMIT', 'EXPORT_CAPACITY_LIMIT', 'DISPATCH_SETPOINT', 'PRICE'];
const HOUR = 3600000;
const DAY = 24 * HOUR;
/** Ranges of the historic chart: span and step (the step picks the rollup). */
const RANGES = {
  '2h': { label: 'Last 2 hours', span: 2 * HOUR },
  day: { label: 'Last day', span: DAY },
  week: { label: 'Last week', span: 7 * DAY },
  month: { label: 'Last 30 days', span: 30 * DAY },
  custom: { label: 'Custom…', span: null },
};

let me = null;
let page = new AbortController();

// ---------- DOM helpers ----------

/** An element with attributes (`on…` are listeners) and children. */
function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'value') node.value = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function field(id, label, control, hint) {
  control.id = id;
  const error = h('div', { class: 'field-error', id: `${id}-error`, 'aria-live': 'polite' });
  control.setAttribute('aria-describedby', `${id}-error`);
  return h('div', { class: 'field' }, h('label', { for: id }, label), control, hint ? h('small', { class: 'muted' }, hint) : null, error);
}

function select(options, value) {
  return h('select', {}, options.map(([v, label]) => h('option', { value: v, selected: v === value }, label)));
}

function table(caption, headers, rows) {
  return h('div', { class: 'table-wrap' }, h('table', {},
    h('caption', { class: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, headers.map((c) => h('th', { scope: 'col', class: c.num ? 'num' : c.cls }, c.label ?? c)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'Nothing to show.')))));
}

function time(ms) {
  if (ms === null || ms === undefined) return '–';
  return new Date(ms).toLocaleString([], { dateStyle: 'short', timeStyle: 'medium' });
}

function ago(ms, now = Date.now()) {
  if (ms === null || ms === undefined) return 'never';
  const s = Math.round((now - ms) / 1000);
  if (Math.abs(s) < 60) return `${s} s ago`;
  if (Math.abs(s) < 3600) return `${Math.round(s / 60)} min ago`;
  if (Math.abs(s) < 86400) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} d ago`;
}

function duration(ms) {
  if (ms === null || ms === undefined) return '–';
  if (Math.abs(ms) < 1000) return `${ms} ms`;
  if (Math.abs(ms) < 120000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.round(ms / 60000)} min`;
}

function watts(v) {
  return v === null || v === undefined ? '–' : `${formatNumber(v)} W`;
}

function stateBadge(online) {
  const [cls, text] = online === true ? ['online', 'Online'] : online === false ? ['offline', 'Offline'] : ['unknown', 'Unknown'];
  return h('span', { class: `badge ${cls}` }, text);
}

function toast(text) {
  const node = document.getElementById('toast');
  node.textContent = text;
  setTimeout(() => { if (node.textContent === text) node.textContent = ''; }, 4000);
}

function can(permission) {
  return Boolean(me?.permissions?.includes(permission));
}

/** Runs `fn` now and every `ms` until the page changes. */
function every(ms, fn) {
  const signal = page.signal;
  const tick = async () => {
    if (signal.aborted) return;
    try {
      await fn();
    } catch (error) {
      if (signal.aborted) return;
      // The token was revoked or the session is gone: back to sign-in.
      if (error instanceof ApiError && error.status === 401) { signOut(); return; }
      console.warn(error);
    }
    if (!signal.aborted) setTimeout(tick, ms);
  };
  tick();
}

function showError(container, error) {
  container.replaceChildren(h('p', { class: 'error', role: 'alert' },
    error instanceof ApiError ? `${error.status}: ${error.message}` : String(error)));
}

function notAvailable(error, what) {
  return error instanceof ApiError && (error.status === 404 || error.status === 405)
    ? h('p', { class: 'muted', role: 'status' }, `${what} are not available on this server yet.`)
    : h('p', { class: 'error', role: 'alert' }, error instanceof ApiError ? `${error.status}: ${error.message}` : String(error));
}

// ---------- sign in ----------

function signInPage(main) {
  const input = h('input', { type: 'password', autocomplete: 'off', spellcheck: 'false', required: true });
  const status = h('p', { class: 'error', role: 'alert', id: 'sign-in-error' });
  const form = h('form', { class: 'stack card', id: 'sign-in', novalidate: true },
    field('token', 'API token', input, 'A token from your administrator (glk_…). It is kept only in this tab.'),
    h('div', {}, h('button', { type: 'submit' }, 'Sign in')), status);
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    status.textContent = '';
    const secret = input.value.trim();
    if (!secret) { status.textContent = 'Enter a token.'; input.focus(); return; }
    try {
      me = await api('/api/v1/me', { tokenOverride: secret });
      setToken(secret);
      showChrome();
      if (!location.hash || location.hash === '#/sign-in') location.hash = '#/overview';
      else route();
    } catch (error) {
      status.textContent = error instanceof ApiError && error.status === 401
        ? 'This token is not valid.' : `Cannot sign in: ${error.message}`;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
    }
  });
  main.replaceChildren(h('h1', {}, 'Sign in'), form);
  input.focus();
}

function showChrome() {
  document.getElementById('nav').hidden = !me;
  document.getElementById('who').hidden = !me;
  document.getElementById('who-name').textContent = me ? `${me.name} (${me.role})` : '';
}

function signOut() {
  setToken(null);
  me = null;
  showChrome();
  location.hash = '#/sign-in';
}

// ---------- overview ----------

function overviewPage(main) {
  const totals = h('dl', { class: 'grid', id: 'totals' });
  const rows = h('div', { id: 'vens' });
  const chart = h('div', { class: 'card', id: 'network-chart' });
  main.replaceChildren(h('h1', {}, 'Overview'), totals,
    h('h2', {}, 'Sites'), rows,
    h('h2', {}, 'Network import and export, last 24 h'), chart);
  const stat = (label, value, id) => h('div', { class: 'stat' }, h('dt', {}, label), h('dd', { id }, value));
  every(5000, async () => {
    const data = await api('/api/v1/overview', { signal: page.signal });
    const t = data.totals;
    totals.replaceChildren(
      stat('Import', watts(t.import_w), 'total-import'),
      stat('Export', watts(t.export_w), 'total-export'),
      stat('VENs online', `${t.vens_online} / ${t.vens_total}`, 'total-online'),
      stat('Offline', String(t.vens_offline), 'total-offline'),
      stat('Active events', String(t.active_events), 'total-events'));
    rows.replaceChildren(table('Sites and their VENs', [
      'VEN', 'Site', 'State', 'Last seen', { label: 'Ingest lag', num: true },
      { label: 'Import', num: true }, { label: 'Export', num: true }, 'Active events',
    ], data.vens.map((v) => {
      const stale = v.power_ts_ms !== null && data.now_ms - v.power_ts_ms > 5 * 60000;
      return h('tr', { 'data-ven': v.ven_id },
        h('th', { scope: 'row' }, h('a', { href: `#/site/${encodeURIComponent(v.ven_id)}` }, v.ven_id)),
        h('td', {}, v.site ?? '–'),
        h('td', {}, stateBadge(v.online)),
        h('td', { title: time(v.last_seen_ms) }, ago(v.last_seen_ms, data.now_ms)),
        h('td', { class: 'num' }, duration(v.ingest_lag_ms)),
        h('td', { class: `num${stale ? ' stale' : ''}`, title: stale ? `as of ${time(v.power_ts_ms)}` : null }, watts(v.import_w)),
        h('td', { class: `num${stale ? ' stale' : ''}` }, watts(v.export_w)),
        h('td', {}, v.active_events.length
          ? v.active_events.map((e, i) => [i ? ', ' : '', h('a', { href: `#/event/${encodeURIComponent(e.id)}` }, e.name || e.id)])
          : '–'));
    })));
  });
  every(60000, async () => {
    const to = Date.now();
    const data = await api(`/api/v1/network${query({ from: to - DAY, to, step: 'PT15M' })}`, { signal: page.signal });
    const points = data.points.map((p) => ({ ts_ms: p.ts_ms, avg: p.import_w - p.export_w }));
    chart.replaceChildren(seriesChart(points, { fromMs: data.from_ms, toMs: data.to_ms, unit: 'W', width: chart.clientWidth - 26,
      label: 'Network net import (positive) and export (negative) over the last 24 hours' }));
  });
}

// ---------- site ----------

/** The step that reads the rollup the range calls for. */
export function stepFor(spanMs) {
  if (spanMs <= 2 * HOUR) return 'PT10S'; // raw readings
  if (spanMs <= DAY) return 'PT1M';
  if (spanMs <= 7 * DAY) return 'PT15M';
  const hours = Math.max(1, Math.ceil(spanMs / HOUR / 5000));
  return `PT${hours}H`;
}

function localInput(ms) {
  const d = new Date(ms - new Date(ms).getTimezoneOffset() * 60000);
  return d.toISOString().slice(0, 16);
}

async function sitePage(main, venId) {
  const ven = await api(`/api/v1/vens/${encodeURIComponent(venId)}`, { signal: page.signal });
  const meter = ven.site_meter;
  const liveValue = h('output', { id: 'live-value', class: 'live-value', 'aria-live': 'polite', 'aria-atomic': 'true', for: '' }, '–');
  const liveTime = h('p', { class: 'muted', id: 'live-time' }, 'Waiting for a reading…');
  const liveChart = h('div', { id: 'live-chart' });
  const liveState = h('span', { id: 'live-state', class: 'muted' }, 'connecting');
  const state = h('span', { id: 'ven-state' }, stateBadge(ven.online));

  const range = select(Object.entries(RANGES).map(([k, r]) => [k, r.label]), 'day');
  const from = h('input', { type: 'datetime-local' });
  const to = h('input', { type: 'datetime-local' });
  const meterInput = h('input', { type: 'text', value: meter ?? '', list: 'meters', required: true, autocomplete: 'off' });
  const meters = h('datalist', { id: 'meters' }, meter ? h('option', { value: meter }) : null);
  const quantity = select(QUANTITIES.map((q) => [q, q.replace('_', ' ')]), 'active_power');
  const historyFields = { meter: 'hist-meter', from: 'hist-from', to: 'hist-to', step: 'hist-range', quantity: 'hist-quantity', phase: 'hist-phase' };
  const phase = select(PHASES.map((p) => [p, p === 'total' ? 'Total' : p.replace(/^(L\d)(L\d)$/, '$1–$2')]), 'total');
  const customFields = h('div', { class: 'row', hidden: true }, field('hist-from', 'From', from), field('hist-to', 'To', to));
  const histChart = h('div', { id: 'history-chart' });
  const histInfo = h('p', { class: 'muted', id: 'history-info', 'aria-live': 'polite' });
  const histForm = h('form', { class: 'card', id: 'history-form', novalidate: true },
    h('div', { class: 'row' }, field('hist-range', 'Range', range), field('hist-meter', 'Meter', meterInput),
      field('hist-quantity', 'Quantity', quantity), field('hist-phase', 'Phase', phase),
      h('div', {}, h('button', { type: 'submit' }, 'Show'))), meters, customFields);
  const loads = h('div', { id: 'loads' });
  const events = h('div', { id: 'site-events' });

  main.replaceChildren(
    h('p', {}, h('a', { href: '#/overview' }, '← Overview')),
    h('h1', {}, ven.site ? `${ven.site} (${venId})` : venId),
    h('p', {}, state, ' · last seen ', h('span', { id: 'ven-last-seen' }, ago(ven.last_seen_ms)),
      ' · agent ', ven.agent_version ?? '–', ' · ingest lag ', duration(ven.ingest_lag_ms)),
    h('section', { class: 'card', 'aria-labelledby': 'live-h' },
      h('h2', { id: 'live-h' }, `Live power${meter ? ` (${meter})` : ''} `, liveState),
      liveValue, liveTime, liveChart),
    h('h2', {}, 'History'), histForm, histInfo, histChart,
    h('h2', {}, 'Loads'), loads,
    h('h2', {}, 'Recent events'), events);

  // Live: the site meter's total active power (without a registered site
  // meter, the first meter reporting it), the last 10 minutes.
  let liveMeter = meter;
  let livePoints = [];
  const LIVE_SPAN = 10 * 60000;
  const drawLive = () => {
    const now = Date.now();
    livePoints = livePoints.filter((p) => p.ts_ms >= now - LIVE_SPAN);
    liveChart.replaceChildren(seriesChart(livePoints, { fromMs: now - LIVE_SPAN, toMs: now, unit: 'W', width: liveChart.clientWidth,
      label: 'Live active power over the last 10 minutes' }));
  };
  if (liveMeter) {
    try {
      const now = Date.now();
      const seed = await api(`/api/v1/series${query({ ven: venId, meter: liveMeter, quantity: 'active_power', phase: 'total', from: now - LIVE_SPAN, to: now + 1000, step: 'PT1S' })}`, { signal: page.signal });
      livePoints = seed.points.map((p) => ({ ts_ms: p.ts_ms, avg: p.avg }));
      const last = livePoints[livePoints.length - 1];
      if (last) {
        liveValue.textContent = watts(last.avg);
        liveTime.textContent = `at ${time(last.ts_ms)}`;
      }
    } catch (error) { console.warn(error); }
  }
  drawLive();
  live(venId, (name, data) => {
    if (name === 'open' || name === 'ready') liveState.textContent = '● live';
    else if (name === 'error') liveState.textContent = 'reconnecting…';
    else if (name === 'lagged') liveState.textContent = `● live (skipped ${data.skipped})`;
    else if (name === 'status') {
      state.replaceChildren(stateBadge(data.online));
      document.getElementById('ven-last-seen').textContent = ago(data.received_ms);
    } else if (name === 'reading') {
      for (const r of data) {
        if (![...meters.options].some((o) => o.value === r.meter)) meters.append(h('option', { value: r.meter }));
        if (r.quantity !== 'active_power' || r.phase !== 'total') continue;
        liveMeter ??= r.meter;
        if (r.meter !== liveMeter) continue;
        livePoints.push({ ts_ms: r.ts_ms, avg: r.value });
        liveValue.textContent = watts(r.value);
        liveValue.dataset.tsMs = String(r.ts_ms);
        liveTime.textContent = `at ${time(r.ts_ms)}`;
      }
      drawLive();
    }
  }, page.signal);

  // History from rollups.
  range.addEventListener('change', () => {
    customFields.hidden = range.value !== 'custom';
    if (range.value === 'custom' && !from.value) {
      from.value = localInput(Date.now() - 3 * DAY);
      to.value = localInput(Date.now());
    }
  });
  const drawHistory = async () => {
    for (const id of Object.values(historyFields)) {
      document.getElementById(`${id}-error`).textContent = '';
      document.getElementById(id).removeAttribute('aria-invalid');
    }
    let toMs = Date.now();
    let fromMs = toMs - (RANGES[range.value].span ?? DAY);
    if (range.value === 'custom') {
      fromMs = new Date(from.value).getTime();
      toMs = new Date(to.value).getTime();
      if (!(fromMs < toMs)) {
        document.getElementById('hist-to-error').textContent = 'Must be after From.';
        to.setAttribute('aria-invalid', 'true');
        return;
      }
    }
    if (!meterInput.value) {
      histInfo.textContent = 'Choose a meter.';
      return;
    }
    histInfo.textContent = 'Loading…';
    try {
      const data = await api(`/api/v1/series${query({ ven: venId, meter: meterInput.value, quantity: quantity.value, phase: phase.value, from: fromMs, to: toMs, step: stepFor(toMs - fromMs) })}`, { signal: page.signal });
      histChart.replaceChildren(seriesChart(data.points, { fromMs: data.from_ms, toMs: data.to_ms, unit: data.unit, width: histChart.clientWidth,
        label: `${data.quantity} ${data.phase} of ${data.meter}, ${RANGES[range.value].label.toLowerCase()}` }));
      histInfo.textContent = `${data.points.length} points of ${data.meter} ${data.quantity} ${data.phase} at ${data.step} from ${data.resolution === 'raw' ? 'raw readings' : `${data.resolution} rollups`}${data.truncated ? ' (truncated)' : ''}.`;
    } catch (error) {
      const fields = error instanceof ApiError ? error.fields() : new Map();
      const map = historyFields;
      let shown = false;
      for (const [name, reason] of fields) {
        const id = map[name];
        if (id) {
          document.getElementById(`${id}-error`).textContent = reason;
          document.getElementById(id).setAttribute('aria-invalid', 'true');
          shown = true;
        }
      }
      histInfo.textContent = shown ? 'Check the fields marked.' : `Cannot load: ${error.message}`;
    }
  };
  histForm.addEventListener('submit', (event) => { event.preventDefault(); drawHistory(); });
  drawHistory();

  every(5000, async () => {
    const data = await api(`/api/v1/vens/${encodeURIComponent(venId)}/loads`, { signal: page.signal });
    loads.replaceChildren(table('Loads', ['Load', 'State', { label: 'Power', num: true }, 'Controllable', 'Last change', 'Cause'],
      data.loads.map((l) => h('tr', {},
        h('th', { scope: 'row' }, l.name),
        h('td', {}, h('span', { class: `badge ${l.on ? 'online' : 'offline'}` }, l.on ? 'On' : 'Off')),
        h('td', { class: 'num' }, watts(l.power_w)),
        h('td', {}, l.controllable ? 'yes' : 'no'),
        h('td', {}, time(l.last_change_ms)),
        h('td', {}, typeof l.cause === 'string' ? l.cause : JSON.stringify(l.cause))))));
  });

  // Recent events that reached this VEN, with its measured shed.
  try {
    const recent = (await newestEvents(10)).reverse();
    const statuses = await Promise.all(recent.map((e) => api(`/api/v1/events/${encodeURIComponent(e.id)}/status`, { signal: page.signal }).catch(() => null)));
    const rows = [];
    recent.forEach((e, i) => {
      const mine = statuses[i]?.vens.find((v) => v.ven_id === venId);
      if (!mine) return;
      rows.push(h('tr', {},
        h('th', { scope: 'row' }, h('a', { href: `#/event/${encodeURIComponent(e.id)}` }, e.eventName || e.id)),
        h('td', {}, time(statuses[i].start_ms)), h('td', {}, mine.state ?? 'no answer yet'),
        h('td', { class: 'num' }, watts(mine.response.baseline_w)), h('td', { class: 'num' }, watts(mine.response.during_w)),
        h('td', { class: 'num' }, watts(mine.response.shed_w)),
        h('td', { class: 'num' }, mine.response.shed_pct === null ? '–' : `${mine.response.shed_pct.toFixed(1)} %`)));
    });
    events.replaceChildren(table('Recent events of this site', ['Event', 'Start', 'State',
      { label: 'Baseline', num: true }, { label: 'During', num: true }, { label: 'Shed', num: true }, { label: 'Shed %', num: true }], rows));
  } catch (error) { showError(events, error); }
}

// ---------- events ----------

/** Pages of the event search (its `limit` at most). */
const EVENT_PAGE = 50;
/** Pages read at most to reach the newest events (the search is oldest first). */
const EVENT_PAGES_MAX = 20;

/**
 * The newest `count` events (at most EVENT_PAGE), oldest first: the
 * search lists by creation, so page through to the end (up to
 * EVENT_PAGES_MAX pages).
 */
async function newestEvents(count = EVENT_PAGE) {
  let kept = [];
  for (let page_ = 0; page_ < EVENT_PAGES_MAX; page_ += 1) {
    const batch = await api(`/openadr3/3.1.0/events${query({ skip: page_ * EVENT_PAGE, limit: EVENT_PAGE })}`, { signal: page.signal });
    kept = [...kept, ...batch].slice(-count);
    if (batch.length < EVENT_PAGE) break;
  }
  return kept;
}

/** Where each API field's error is shown in the create form. */
function eventFieldFor(name) {
  if (name === 'programID' || name === 'programName') return 'ev-program';
  if (name === 'eventName') return 'ev-name';
  if (name.startsWith('targets')) return 'ev-targets';
  if (name === 'intervalPeriod.start') return 'ev-start';
  if (name.startsWith('intervalPeriod')) return 'ev-duration';
  if (name.includes('type') || name.startsWith('payloadDescriptors')) return 'ev-type';
  if (name.startsWith('intervals')) return 'ev-value';
  if (name === 'priority') return 'ev-priority';
  return null;
}

function createEventForm(programs, onCreated) {
  const program = select([...programs.map((p) => [p.id, p.programName]), ['', 'New program…']], programs[0]?.id ?? '');
  const programName = h('input', { type: 'text', autocomplete: 'off' });
  const newProgram = h('div', { hidden: programs.length > 0 }, field('ev-program-name', 'New program name', programName));
  program.addEventListener('change', () => { newProgram.hidden = program.value !== ''; });
  const name = h('input', { type: 'text', autocomplete: 'off' });
  const targets = h('input', { type: 'text', autocomplete: 'off', placeholder: 'ven-1, north' });
  const start = h('input', { type: 'datetime-local', value: localInput(Date.now()) });
  const minutes = h('input', { type: 'number', value: '60', step: '1' });
  const type = select(PAYLOAD_TYPES.map((t) => [t, t]), 'SIMPLE');
  const value = h('input', { type: 'number', value: '1', step: 'any' });
  const priority = h('input', { type: 'number', step: '1' });
  const summary = h('div', { class: 'error', role: 'alert', id: 'ev-summary' });
  const form = h('form', { class: 'stack card', id: 'create-event', novalidate: true, 'aria-labelledby': 'create-h' },
    h('h2', { id: 'create-h' }, 'Create event'),
    field('ev-program', 'Program', program), newProgram,
    field('ev-name', 'Event name', name),
    field('ev-targets', 'Targets', targets, 'VEN ids or group names, separated by commas.'),
    h('div', { class: 'row' }, field('ev-start', 'Start', start), field('ev-duration', 'Duration (minutes)', minutes)),
    h('div', { class: 'row' }, field('ev-type', 'Payload type', type), field('ev-value', 'Value', value), field('ev-priority', 'Priority', priority)),
    summary, h('div', {}, h('button', { type: 'submit' }, 'Create and dispatch')));
  const ids = ['ev-program', 'ev-program-name', 'ev-name', 'ev-targets', 'ev-start', 'ev-duration', 'ev-type', 'ev-value', 'ev-priority'];
  const showErrors = (error, fallbackField) => {
    const fields = error instanceof ApiError ? error.fields() : new Map();
    const unplaced = [];
    let first = null;
    for (const [apiName, reason] of fields) {
      const id = fallbackField ?? eventFieldFor(apiName);
      const node = id && form.querySelector(`#${id}-error`);
      if (node) {
        node.textContent = node.textContent ? `${node.textContent}; ${reason}` : reason;
        form.querySelector(`#${id}`).setAttribute('aria-invalid', 'true');
        first ??= form.querySelector(`#${id}`);
      } else unplaced.push(`${apiName}: ${reason}`);
    }
    summary.textContent = fields.size
      ? `The event was not created. ${unplaced.join(' ')}`.trim()
      : `The event was not created: ${error.message}`;
    first?.focus();
  };
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    summary.textContent = '';
    for (const id of ids) {
      form.querySelector(`#${id}-error`).textContent = '';
      form.querySelector(`#${id}`).removeAttribute('aria-invalid');
    }
    let programId = program.value;
    if (!programId) {
      try {
        const made = await api('/openadr3/3.1.0/programs', { method: 'POST', body: { programName: programName.value } });
        programId = made.id;
        // Keep it selected, so a retry after a refused event reuses it.
        program.prepend(h('option', { value: made.id }, made.programName));
        program.value = made.id;
        newProgram.hidden = true;
      } catch (error) { showErrors(error, 'ev-program-name'); return; }
    }
    const m = Number(minutes.value);
    const startMs = start.value ? new Date(start.value).getTime() : NaN;
    const body = {
      programID: programId,
      eventName: name.value || undefined,
      targets: targets.value.split(',').map((t) => t.trim()).filter(Boolean),
      intervalPeriod: {
        start: Number.isNaN(startMs) ? start.value : new Date(startMs).toISOString(),
        duration: minutes.value === '' || Number.isNaN(m) ? minutes.value : `${m < 0 ? '-' : ''}PT${Math.abs(m)}M`,
      },
      intervals: [{ id: 0, payloads: [{ type: type.value, values: [value.value === '' ? null : Number(value.value)] }] }],
    };
    if (priority.value !== '') body.priority = Number(priority.value);
    try {
      const created = await api('/openadr3/3.1.0/events', { method: 'POST', body });
      toast(`Event ${created.eventName || created.id} created`);
      onCreated(created);
    } catch (error) { showErrors(error); }
  });
  return form;
}

async function eventsPage(main) {
  const list = h('div', { id: 'event-list' });
  const chart = h('div', { class: 'card', id: 'event-timeline' });
  main.replaceChildren(h('h1', {}, 'Events'), h('h2', {}, 'Timeline (7 days back, 7 days ahead)'), chart, h('h2', {}, 'Newest events'), list);
  const programs = await api('/openadr3/3.1.0/programs?limit=50', { signal: page.signal });
  const names = new Map(programs.map((p) => [p.id, p.programName]));
  if (can('dispatch')) {
    main.append(createEventForm(programs, (created) => { location.hash = `#/event/${encodeURIComponent(created.id)}`; }));
  }
  every(10000, async () => {
    const events = await newestEvents();
    const statuses = await Promise.all(events.map((e) => api(`/api/v1/events/${encodeURIComponent(e.id)}/status`, { signal: page.signal }).catch(() => null)));
    const now = Date.now();
    chart.replaceChildren(timeline(events.map((e, i) => ({
      label: e.eventName || e.id,
      start_ms: statuses[i]?.start_ms ?? Date.parse(e.intervalPeriod?.start ?? e.createdDateTime),
      end_ms: statuses[i]?.end_ms ?? null,
    })), { fromMs: now - 7 * DAY, toMs: now + 7 * DAY, nowMs: now, width: chart.clientWidth - 26, label: 'Events on a timeline from 7 days ago to 7 days ahead' }));
    list.replaceChildren(table('Events', ['Event', 'Program', 'Start', 'End', 'Targets', 'Answers'],
      events.slice().reverse().map((e, i) => {
        const s = statuses[events.length - 1 - i];
        return h('tr', { 'data-event': e.id },
          h('th', { scope: 'row' }, h('a', { href: `#/event/${encodeURIComponent(e.id)}` }, e.eventName || e.id)),
          h('td', {}, names.get(e.programID) ?? e.programID),
          h('td', {}, time(s?.start_ms)), h('td', {}, s?.end_ms ? time(s.end_ms) : 'open'),
          h('td', {}, (e.targets || []).join(', ')),
          h('td', {}, s ? Object.entries(s.states).map(([k, v]) => `${k}: ${v}`).join(', ') : '–'));
      })));
  });
}

async function eventPage(main, id) {
  const summary = h('div', { id: 'event-summary' });
  const vens = h('div', { id: 'event-vens', 'aria-live': 'polite' });
  const title = h('h1', {}, `Event ${id}`);
  main.replaceChildren(h('p', {}, h('a', { href: '#/events' }, '← Events')), title, summary, h('h2', {}, 'Per VEN'), vens);
  const event = await api(`/openadr3/3.1.0/events/${encodeURIComponent(id)}`, { signal: page.signal });
  title.textContent = event.eventName ? `Event “${event.eventName}”` : `Event ${id}`;
  every(2000, async () => {
    const s = await api(`/api/v1/events/${encodeURIComponent(id)}/status`, { signal: page.signal });
    const pct = (v) => (v === null || v === undefined ? '–' : `${v.toFixed(1)} %`);
    summary.replaceChildren(h('dl', { class: 'grid' },
      h('div', { class: 'stat' }, h('dt', {}, 'Start'), h('dd', {}, time(s.start_ms))),
      h('div', { class: 'stat' }, h('dt', {}, 'End'), h('dd', {}, s.end_ms ? time(s.end_ms) : 'open')),
      h('div', { class: 'stat' }, h('dt', {}, 'Answers'), h('dd', { id: 'event-states' }, Object.entries(s.states).map(([k, v]) => `${k}: ${v}`).join(', ') || '–')),
      h('div', { class: 'stat' }, h('dt', {}, 'Measured shed'), h('dd', {}, `${watts(s.total.shed_w)} (${pct(s.total.shed_pct)})`))));
    vens.replaceChildren(table('Status per VEN', ['VEN', 'State', 'At', { label: 'Baseline', num: true },
      { label: 'During', num: true }, { label: 'Shed', num: true }, { label: 'Shed %', num: true }, 'Note'],
    s.vens.map((v) => h('tr', { 'data-ven': v.ven_id },
      h('th', { scope: 'row' }, h('a', { href: `#/site/${encodeURIComponent(v.ven_id)}` }, v.ven_id)),
      h('td', { class: 'ven-ack-state' }, v.state ?? 'no answer yet'),
      h('td', {}, time(v.at_ms)),
      h('td', { class: 'num' }, watts(v.response.baseline_w)), h('td', { class: 'num' }, watts(v.response.during_w)),
      h('td', { class: 'num' }, watts(v.response.shed_w)), h('td', { class: 'num' }, pct(v.response.shed_pct)),
      h('td', {}, v.reason ?? v.response.unmeasured_reason ?? '')))));
  });
}

// ---------- alerts ----------

function alertsPage(main) {
  const state = select([['open', 'Open'], ['resolved', 'Resolved'], ['all', 'All']], 'open');
  const list = h('div', { id: 'alert-list', 'aria-live': 'polite' });
  const mayAck = can('acknowledge_alerts');
  main.replaceChildren(h('h1', {}, 'Alerts'),
    h('form', { class: 'row', novalidate: true, onsubmit: (e) => e.preventDefault() }, field('alert-state', 'Show', state)), list);
  const load = async () => {
    let data;
    try {
      data = await api(`/api/v1/alerts${query({ state: state.value, limit: 200 })}`, { signal: page.signal });
    } catch (error) {
      if (!page.signal.aborted) list.replaceChildren(notAvailable(error, 'Alerts'));
      return;
    }
    list.replaceChildren(table('Alerts', ['Severity', 'Alert', 'Subject', 'VEN', 'Opened', 'Resolved', 'Acknowledged', 'Message', ''],
      data.alerts.map((a) => h('tr', { 'data-alert': a.id, 'data-rule': a.rule },
        h('td', {}, h('span', { class: `badge ${a.severity}` }, a.severity)),
        h('th', { scope: 'row' }, a.rule),
        h('td', {}, a.subject ?? '–'),
        h('td', {}, a.ven_id ? h('a', { href: `#/site/${encodeURIComponent(a.ven_id)}` }, a.ven_id) : '–'),
        h('td', {}, time(a.opened_ms)), h('td', {}, a.resolved_ms ? time(a.resolved_ms) : 'open'),
        h('td', {}, a.acknowledged_ms ? `${time(a.acknowledged_ms)} by ${a.acknowledged_by ?? '?'}` : 'no'),
        h('td', {}, a.message ?? ''),
        h('td', {}, mayAck && !a.acknowledged_ms ? h('button', {
          type: 'button', class: 'secondary', 'aria-label': `Acknowledge ${a.rule} alert ${a.subject ?? a.id}`,
          onclick: async () => {
            try {
              await api(`/api/v1/alerts/${encodeURIComponent(a.id)}/ack`, { method: 'POST', body: {} });
              toast('Alert acknowledged');
              load();
            } catch (error) { toast(`Cannot acknowledge: ${error.message}`); }
          },
        }, 'Acknowledge') : '')))));
  };
  state.addEventListener('change', load);
  every(5000, load);
}

// ---------- projects ----------

function projectsPage(main) {
  const list = h('div', { id: 'project-list' });
  const detail = h('section', { id: 'project-detail', 'aria-live': 'polite' });
  main.replaceChildren(h('h1', {}, 'Projects'), list, detail);
  const showProject = async (p) => {
    detail.replaceChildren(h('h2', {}, p.name), h('p', { class: 'muted' }, 'Loading…'));
    const to = Date.now();
    const from = to - 365 * DAY;
    try {
      const [energy, finances] = await Promise.all([
        api(`/api/v1/projects/${encodeURIComponent(p.id)}/energy${query({ from, to, period: 'month' })}`, { signal: page.signal }),
        api(`/api/v1/projects/${encodeURIComponent(p.id)}/finances${query({ from, to, period: 'month' })}`, { signal: page.signal }).catch(() => null),
      ]);
      const month = (ms) => new Date(ms).toISOString().slice(0, 7);
      detail.replaceChildren(h('h2', {}, `${p.name}: last 12 months`),
        seriesChart(energy.rows.map((r) => ({ ts_ms: r.start_ms, avg: r.generated_kwh - r.consumed_kwh })),
          { fromMs: from, toMs: to, unit: 'kWh', width: detail.clientWidth, label: `Net energy per month of ${p.name}` }),
        table('Energy per month', ['Month', { label: 'Generated kWh', num: true }, { label: 'Consumed kWh', num: true }],
          energy.rows.map((r) => h('tr', {}, h('th', { scope: 'row' }, month(r.start_ms)),
            h('td', { class: 'num' }, formatNumber(r.generated_kwh)), h('td', { class: 'num' }, formatNumber(r.consumed_kwh))))),
        finances ? table('Finances per month', ['Month', { label: 'Expenses', num: true }, { label: 'Revenue', num: true },
          { label: 'DR revenue', num: true }, { label: 'Net', num: true }],
        finances.totals.map((t) => h('tr', {}, h('th', { scope: 'row' }, month(t.start_ms)),
          ...['expenses', 'revenue', 'dr_revenue', 'net'].map((k) => h('td', { class: 'num' }, formatNumber(t[k])))))) : null);
    } catch (error) { detail.replaceChildren(notAvailable(error, 'Project figures')); }
  };
  (async () => {
    try {
      const data = await api('/api/v1/projects', { signal: page.signal });
      list.replaceChildren(table('Projects', ['Project', 'Kind', 'Status', { label: 'Capacity', num: true }, 'Location', 'VENs', 'Milestones', ''],
        data.projects.map((p) => h('tr', { 'data-project': p.id },
          h('th', { scope: 'row' }, p.name), h('td', {}, p.kind ?? '–'), h('td', {}, p.status ?? '–'),
          h('td', { class: 'num' }, p.capacity_kw === null || p.capacity_kw === undefined ? '–' : `${formatNumber(p.capacity_kw)} kW`),
          h('td', {}, p.location?.address ?? (p.location ? `${p.location.latitude}, ${p.location.longitude}` : '–')),
          h('td', {}, (p.ven_ids || []).map((v, i) => [i ? ', ' : '', h('a', { href: `#/site/${encodeURIComponent(v)}` }, v)])),
          h('td', {}, (p.milestones || []).map((m) => `${m.name}${m.reached_ms ? ' ✓' : ''}`).join(', ') || '–'),
          h('td', {}, h('button', { type: 'button', class: 'secondary', 'aria-label': `Show figures of ${p.name}`, onclick: () => showProject(p) }, 'Figures'))))));
    } catch (error) { if (!page.signal.aborted) list.replaceChildren(notAvailable(error, 'Projects')); }
  })();
}

// ---------- router ----------

const ROUTES = [
  [/^#\/overview$/, overviewPage, '#/overview'],
  [/^#\/site\/(.+)$/, sitePage, '#/overview'],
  [/^#\/events$/, eventsPage, '#/events'],
  [/^#\/event\/(.+)$/, eventPage, '#/events'],
  [/^#\/alerts$/, alertsPage, '#/alerts'],
  [/^#\/projects$/, projectsPage, '#/projects'],
];

async function route() {
  page.abort();
  page = new AbortController();
  const main = document.getElementById('main');
  if (!token() || !me) {
    signInPage(main);
    return;
  }
  const hash = location.hash || '#/overview';
  const match = ROUTES.find(([re]) => re.test(hash));
  if (!match) { location.hash = '#/overview'; return; }
  const [re, render, nav] = match;
  for (const a of document.querySelectorAll('#nav a')) {
    if (a.getAttribute('href') === nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  const args = (hash.match(re) || []).slice(1).map(decodeURIComponent);
  main.replaceChildren(h('p', { class: 'muted' }, 'Loading…'));
  const signal = page.signal;
  try {
    await render(main, ...args);
  } catch (error) {
    if (signal.aborted) return;
    if (error instanceof ApiError && error.status === 401) { signOut(); return; }
    showError(main, error);
  }
  if (!signal.aborted) {
    document.title = `${main.querySelector('h1')?.textContent ?? 'gridlink'} · gridlink`;
  }
}

async function start() {
  document.getElementById('sign-out').addEventListener('click', signOut);
  if (token()) {
    try { me = await api('/api/v1/me'); } catch { setToken(null); me = null; }
  }
  showChrome();
  window.addEventListener('hashchange', () => {
    route().then(() => document.getElementById('main').focus({ preventScroll: true }));
  });
  route();
}

start();
