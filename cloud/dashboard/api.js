// The API client: the bearer token (kept in sessionStorage, so it is gone
// when the tab closes), JSON requests, RFC 7807 problems as exceptions, and
// the live stream read with fetch() (EventSource cannot send headers; the
// token never goes into a URL).

const TOKEN_KEY = 'gridlink.token';

export function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function setToken(value) {
  if (value) sessionStorage.setItem(TOKEN_KEY, value);
  else sessionStorage.removeItem(TOKEN_KEY);
}

/** An error answer: its status and problem document (if any). */
export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem || {};
  }

  /** `invalid_params` as a map from field name to reason. */
  fields() {
    const out = new Map();
    for (const p of this.problem.invalid_params || []) out.set(p.name, p.reason);
    return out;
  }
}

/** One request; the parsed JSON answer (null when empty). */
export async function api(path, { method = 'GET', body, tokenOverride, signal } = {}) {
  const headers = { Accept: 'application/json' };
  const secret = tokenOverride ?? token();
  if (secret) headers.Authorization = `Bearer ${secret}`;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const response = await fetch(path, {
    method, headers, signal, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = { detail: text }; }
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

/**
 * Reads `/api/v1/live` until `signal` aborts; calls `onEvent(name, data)`
 * for each server-sent event. Reconnects after an error, every 3 s.
 */
export async function live(venId, onEvent, signal) {
  while (!signal.aborted) {
    try {
      const response = await fetch(`/api/v1/live${query({ ven_id: venId })}`, {
        headers: { Authorization: `Bearer ${token()}`, Accept: 'text/event-stream' },
        signal,
      });
      if (!response.ok) throw new ApiError(response.status, null);
      onEvent('open', null);
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end;
        while ((end = buffer.indexOf('\n\n')) >= 0) {
          const frame = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          let name = 'message';
          const data = [];
          for (const line of frame.split('\n')) {
            if (line.startsWith('event:')) name = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
          }
          if (data.length) onEvent(name, JSON.parse(data.join('\n')));
        }
      }
    } catch (error) {
      if (signal.aborted) return;
      onEvent('error', error);
    }
    if (signal.aborted) return;
    await new Promise((resolve) => setTimeout(resolve, 3000));
  }
}
