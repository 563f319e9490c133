// Small SVG charts drawn with DOM calls (no inline styles: the CSP forbids
// them): a time series with a min/max band, and a timeline of intervals.

const NS = 'http://www.w3.org/2000/svg';
const H = 220;
const PAD = { left: 76, right: 10, top: 10, bottom: 24 };

function el(name, attrs = {}, text) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** Drawing width: the container's, so text is not stretched. */
function widthOf(width) {
  return Math.max(280, Math.round(width || 800));
}

function svg(label, W) {
  return el('svg', { viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: 'chart', role: 'img', 'aria-label': label });
}

export function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return '–';
  const a = Math.abs(v);
  if (a >= 1e6) return `${(v / 1e6).toFixed(2)} M`;
  if (a >= 1e4) return `${(v / 1e3).toFixed(1)} k`;
  if (a >= 100) return v.toFixed(0);
  return v.toFixed(2).replace(/\.?0+$/, '') || '0';
}

function timeLabel(ms, spanMs) {
  const d = new Date(ms);
  if (spanMs <= 2 * 86400000) return d.toISOString().slice(11, 16);
  return d.toISOString().slice(5, 10);
}

/**
 * A line chart of `points` ({ts_ms, avg, min, max}) over [fromMs, toMs].
 * Returns the <svg>; `label` is its accessible name, `width` the
 * container's width in CSS pixels.
 */
export function seriesChart(points, { fromMs, toMs, unit = '', label, width }) {
  const W = widthOf(width);
  const root = svg(label, W);
  const values = points.flatMap((p) => [p.min ?? p.avg, p.max ?? p.avg]);
  let lo = values.length ? Math.min(...values) : 0;
  let hi = values.length ? Math.max(...values) : 1;
  if (lo === hi) { lo -= 1; hi += 1; }
  const span = Math.max(1, toMs - fromMs);
  const x = (t) => PAD.left + ((t - fromMs) / span) * (W - PAD.left - PAD.right);
  const y = (v) => H - PAD.bottom - ((v - lo) / (hi - lo)) * (H - PAD.top - PAD.bottom);
  root.append(el('line', { class: 'axis', x1: PAD.left, x2: W - PAD.right, y1: H - PAD.bottom, y2: H - PAD.bottom }));
  root.append(el('line', { class: 'axis', x1: PAD.left, x2: PAD.left, y1: PAD.top, y2: H - PAD.bottom }));
  for (const v of [lo, (lo + hi) / 2, hi]) {
    root.append(el('text', { x: PAD.left - 4, y: y(v) + 4, 'text-anchor': 'end' }, `${formatNumber(v)}${unit ? ` ${unit}` : ''}`));
  }
  for (let i = 0; i <= 4; i += 1) {
    const t = fromMs + (span * i) / 4;
    root.append(el('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, timeLabel(t, span)));
  }
  if (!points.length) {
    root.append(el('text', { x: W / 2, y: H / 2, 'text-anchor': 'middle' }, 'No data in this range'));
    return root;
  }
  const hasBand = points.some((p) => p.min !== undefined && p.max !== undefined && p.min !== p.max);
  if (hasBand) {
    const top = points.map((p) => `${x(p.ts_ms).toFixed(1)},${y(p.max).toFixed(1)}`);
    const bottom = points.slice().reverse().map((p) => `${x(p.ts_ms).toFixed(1)},${y(p.min).toFixed(1)}`);
    root.append(el('polygon', { class: 'band', points: [...top, ...bottom].join(' ') }));
  }
  root.append(el('polyline', {
    class: 'line',
    points: points.map((p) => `${x(p.ts_ms).toFixed(1)},${y(p.avg).toFixed(1)}`).join(' '),
  }));
  return root;
}

/** A timeline of `items` ({label, start_ms, end_ms}) around now. */
export function timeline(items, { fromMs, toMs, nowMs, label, width }) {
  const W = widthOf(width);
  const root = svg(label, W);
  const rows = Math.max(1, items.length);
  const rowH = Math.min(24, (H - PAD.top - PAD.bottom) / rows);
  const span = Math.max(1, toMs - fromMs);
  const x = (t) => PAD.left + ((Math.min(Math.max(t, fromMs), toMs) - fromMs) / span) * (W - PAD.left - PAD.right);
  items.forEach((item, i) => {
    const y0 = PAD.top + i * rowH;
    const end = item.end_ms ?? toMs;
    const bar = el('rect', { class: end < nowMs ? 'bar past' : 'bar', x: x(item.start_ms), y: y0 + 2,
      width: Math.max(2, x(end) - x(item.start_ms)), height: rowH - 4 });
    bar.append(el('title', {}, item.label));
    root.append(bar);
    root.append(el('text', { x: PAD.left - 4, y: y0 + rowH / 2 + 4, 'text-anchor': 'end' }, item.label.slice(0, 8)));
  });
  root.append(el('line', { class: 'now', x1: x(nowMs), x2: x(nowMs), y1: PAD.top, y2: H - PAD.bottom }));
  for (let i = 0; i <= 4; i += 1) {
    const t = fromMs + (span * i) / 4;
    root.append(el('text', { x: x(t), y: H - 6, 'text-anchor': i === 0 ? 'start' : i === 4 ? 'end' : 'middle' }, timeLabel(t, span)));
  }
  return root;
}
