// @ts-check
/**
 * Logging in to the console: OAuth 2.0's authorization code flow with PKCE (S256), as the public
 * first-party client `warden-console`. The tokens live in this module's memory only (never in
 * localStorage or a cookie); the refresh token renews them before they run out. What must survive
 * the trip to the login page (the PKCE verifier, the state, where to come back to) waits in
 * sessionStorage and is removed when the trip ends.
 */

const CLIENT_ID = 'warden-console';
const BASE_SCOPES = 'openid email offline_access devices:read devices:write devices:command devices:manage firmware:manage';
const PENDING = 'warden.console.login';
/** Set once an administrator scope was refused, so the next login does not ask again. */
const NOT_ADMIN = 'warden.console.not-admin';

/** @type {{access: string, refresh: string | null, expiresAt: number, scope: string} | null} */
let tokens = null;
/** @type {Record<string, string> | null} */
let discovery = null;
/** @type {ReturnType<typeof setTimeout> | undefined} */
let renewal;

async function endpoints() {
  if (!discovery) {
    const response = await fetch('/.well-known/openid-configuration');
    discovery = await response.json();
  }
  return /** @type {Record<string, string>} */ (discovery);
}

function redirectUri() {
  return `${location.origin}/console/`;
}

/** @param {Uint8Array} bytes */
function base64url(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function randomText() {
  const bytes = new Uint8Array(32);
  crypto.getRandomValues(bytes);
  return base64url(bytes);
}

/** Sends the browser to Warden's login; it comes back to the console with a code. */
export async function startLogin() {
  const found = await endpoints();
  const verifier = randomText();
  const state = randomText();
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, back: location.hash }));
  const digest = await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier));
  const scope = sessionStorage.getItem(NOT_ADMIN) ? BASE_SCOPES : `${BASE_SCOPES} admin`;
  const url = new URL(found.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: CLIENT_ID,
    redirect_uri: redirectUri(),
    scope,
    state,
    nonce: randomText(),
    code_challenge: base64url(new Uint8Array(digest)),
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

/**
 * Finishes a login when this page is the way back from it. Returns whether it was; a login that
 * asked for the administrator scope and was refused it starts again without.
 */
export async function finishLogin() {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return false;
  const saved = JSON.parse(sessionStorage.getItem(PENDING) ?? 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `/console/${saved?.back ?? ''}`);
  if (!saved || params.get('state') !== saved.state) {
    throw new Error('This login did not start in this tab. Reload the page to log in again.');
  }
  const error = params.get('error');
  if (error === 'invalid_scope' && !sessionStorage.getItem(NOT_ADMIN)) {
    sessionStorage.setItem(NOT_ADMIN, '1');
    await startLogin();
    return true;
  }
  if (error) throw new Error(`The login was refused (${error}).`);
  await tokenRequest({
    grant_type: 'authorization_code',
    code: params.get('code') ?? '',
    redirect_uri: redirectUri(),
    client_id: CLIENT_ID,
    code_verifier: saved.verifier,
  });
  return true;
}

/** @param {Record<string, string>} form */
async function tokenRequest(form) {
  const found = await endpoints();
  const response = await fetch(found.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams(form),
  });
  const body = await response.json();
  if (!response.ok) {
    tokens = null;
    throw new Error(`Warden refused the tokens (${body.error ?? response.status}).`);
  }
  tokens = {
    access: body.access_token,
    refresh: body.refresh_token ?? tokens?.refresh ?? null,
    expiresAt: Date.now() + (body.expires_in ?? 300) * 1000,
    scope: body.scope ?? '',
  };
  clearTimeout(renewal);
  // Renewed silently a minute before the end (or halfway, for short lifetimes).
  const lifetime = tokens.expiresAt - Date.now();
  renewal = setTimeout(() => { refresh().catch(() => startLogin()); }, Math.max(lifetime - 60_000, lifetime / 2));
}

/** Swaps the refresh token for new tokens; without one, logs in again. */
export async function refresh() {
  if (!tokens?.refresh) {
    await startLogin();
    return;
  }
  await tokenRequest({ grant_type: 'refresh_token', refresh_token: tokens.refresh, client_id: CLIENT_ID });
}

/** The current access token, renewed first when it is about to run out. */
export async function accessToken() {
  if (!tokens) throw new Error('Not logged in.');
  if (tokens.expiresAt - Date.now() < 10_000) await refresh();
  return tokens?.access ?? '';
}

export function loggedIn() {
  return tokens !== null;
}

/** Whether the token carries the administrator scope. */
export function isAdmin() {
  return (tokens?.scope ?? '').split(' ').includes('admin');
}

/** Revokes the refresh token, ends the login session, and comes back to the console's start. */
export async function logout() {
  const found = await endpoints();
  if (tokens?.refresh) {
    await fetch(found.revocation_endpoint, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams({ token: tokens.refresh, token_type_hint: 'refresh_token', client_id: CLIENT_ID }),
    }).catch(() => undefined);
  }
  tokens = null;
  clearTimeout(renewal);
  sessionStorage.removeItem(NOT_ADMIN);
  const url = new URL(found.end_session_endpoint);
  url.search = new URLSearchParams({ client_id: CLIENT_ID, post_logout_redirect_uri: redirectUri() }).toString();
  location.assign(url.toString());
}
