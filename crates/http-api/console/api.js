// @ts-check
/** Calls of Warden's API with the person's access token, through the gateway like any client. */

import { accessToken, refresh } from './auth.js';

/** An error answer of the API, with its message for people. */
export class ApiError extends Error {
  /**
   * @param {number} status
   * @param {string} message
   */
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/**
 * Sends a request with the access token: `body` as JSON, or `raw` (a file, say) as it is.
 * @param {string} method
 * @param {string} path
 * @param {{body?: unknown, raw?: Blob, headers?: Record<string, string>, signal?: AbortSignal}} [options]
 */
export async function send(method, path, options = {}) {
  const attempt = async () => {
    /** @type {Record<string, string>} */
    const headers = { Authorization: `Bearer ${await accessToken()}`, ...(options.headers ?? {}) };
    /** @type {RequestInit} */
    const init = { method, headers, signal: options.signal };
    if (options.body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(options.body);
    } else if (options.raw !== undefined) {
      init.body = options.raw;
    }
    return fetch(path, init);
  };
  let response = await attempt();
  if (response.status === 401) {
    await refresh();
    response = await attempt();
  }
  return response;
}

/**
 * Sends a request and reads its JSON answer; an error answer throws an ApiError.
 * @param {string} method
 * @param {string} path
 * @param {{body?: unknown, headers?: Record<string, string>}} [options]
 * @returns {Promise<{body: any, etag: string | null, status: number}>}
 */
export async function call(method, path, options = {}) {
  const response = await send(method, path, options);
  const text = await response.text();
  const body = text ? JSON.parse(text) : null;
  if (!response.ok) {
    throw new ApiError(response.status, body?.error?.message ?? `${response.status} ${response.statusText}`);
  }
  return { body, etag: response.headers.get('ETag'), status: response.status };
}

/** @param {string} path */
export async function get(path) {
  return (await call('GET', path)).body;
}

/**
 * Reads Server-Sent Events from `path` until `signal` aborts, calling `onEvent` with each data
 * object; reconnects with Last-Event-ID when the stream ends (it does when the token would).
 * @param {string} path
 * @param {(event: any) => void} onEvent
 * @param {AbortSignal} signal
 */
export async function follow(path, onEvent, signal) {
  /** @type {string | null} */
  let lastId = null;
  while (!signal.aborted) {
    const headers = lastId ? { 'Last-Event-ID': lastId } : undefined;
    const response = await send('GET', path, { headers, signal });
    if (!response.ok || !response.body) throw new ApiError(response.status, 'The live events could not be opened.');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let pending = '';
    /** @type {string | null} */
    let id = null;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      pending += value;
      let end;
      while ((end = pending.indexOf('\n')) >= 0) {
        const line = pending.slice(0, end).replace(/\r$/, '');
        pending = pending.slice(end + 1);
        if (line.startsWith('id:')) id = line.slice(3).trim();
        else if (line.startsWith('data:')) {
          try { onEvent(JSON.parse(line.slice(5))); } catch { /* not an event */ }
        } else if (line === '' && id) {
          lastId = id;
          id = null;
        }
      }
    }
  }
}
