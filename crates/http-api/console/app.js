// @ts-check
/**
 * The console's pages, chosen by the address's fragment: `#/devices` (the person's devices and a
 * claim form), `#/devices/ID` (one device: status, settings, commands, live events, firmware,
 * grants and its access log, each shown when the person may use it), `#/admin` (the maker's
 * devices, clients and firmware, for administrators). Everything is built with DOM calls and
 * `textContent`, never from HTML strings, so nothing a device or a person sent can run here.
 */

import { ApiError, call, follow, get, send } from './api.js';
import { finishLogin, isAdmin, loggedIn, logout, startLogin } from './auth.js';

const view = /** @type {HTMLElement} */ (document.getElementById('view'));
const notice = /** @type {HTMLElement} */ (document.getElementById('notice'));
/** Stops what the page on screen runs (live events, polling) when another is shown. */
let leaving = new AbortController();

/**
 * An element with properties (`on*` become listeners) and children.
 * @param {string} tag
 * @param {Record<string, any>} [props]
 * @param {...(Node | string | null | undefined | false)} children
 * @returns {HTMLElement}
 */
function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith('on')) element.addEventListener(name.slice(2), value);
    else if (name === 'dataset') Object.assign(element.dataset, value);
    else if (name in element && name !== 'list') /** @type {any} */ (element)[name] = value;
    else element.setAttribute(name, String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    element.append(child);
  }
  return element;
}

/** @param {unknown} value */
function text(value) {
  if (value === null || value === undefined) return '–';
  if (typeof value === 'string') return value;
  if (typeof value === 'boolean') return value ? 'yes' : 'no';
  return JSON.stringify(value);
}

/** @param {string | null | undefined} time */
function when(time) {
  return time ? new Date(time).toLocaleString() : '–';
}

/**
 * @param {string} message
 * @param {boolean} [error]
 */
function say(message, error = false) {
  notice.textContent = message;
  notice.className = error ? 'error' : 'ok';
}

/**
 * A table with a header row; each cell carries its column's name for the narrow layout.
 * @param {string} caption
 * @param {string[]} headers
 * @param {(Node | string)[][]} rows
 */
function table(caption, headers, rows) {
  if (rows.length === 0) return h('p', { className: 'empty' }, `No ${caption.toLowerCase()} yet.`);
  return h('table', {},
    h('caption', { className: 'visually-hidden' }, caption),
    h('thead', {}, h('tr', {}, ...headers.map((name) => h('th', { scope: 'col' }, name)))),
    h('tbody', {}, ...rows.map((row) => h('tr', {}, ...row.map((cell, index) => h('td', { dataset: { label: headers[index] } }, cell))))));
}

/**
 * Runs a form's action with its button disabled, saying how it went.
 * @param {SubmitEvent} event
 * @param {() => Promise<string | void>} action
 */
async function submit(event, action) {
  event.preventDefault();
  const form = /** @type {HTMLFormElement} */ (event.target);
  const button = form.querySelector('button');
  if (button) button.disabled = true;
  try {
    const done = await action();
    if (done) say(done);
  } catch (error) {
    say(error instanceof Error ? error.message : String(error), true);
  } finally {
    if (button) button.disabled = false;
  }
}

/** @param {Node[]} nodes */
function show(...nodes) {
  view.replaceChildren(...nodes);
  view.focus();
}

// ---- Pages -----------------------------------------------------------------------------------

async function devicesPage() {
  const { devices } = await get('/api/v1/devices');
  const rows = devices.map((/** @type {any} */ device) => [
    h('a', { href: `#/devices/${encodeURIComponent(device.device_id)}` }, device.device_id),
    device.model,
    h('span', { className: device.online ? 'online' : 'offline' }, device.online ? 'online' : 'offline'),
    text(device.firmware_version),
    device.permissions.includes('manage_ownership') ? 'owner' : 'granted',
  ]);
  const deviceId = h('input', { id: 'claim-device', name: 'device_id', required: true, autocomplete: 'off' });
  const code = h('input', { id: 'claim-code', name: 'claim_code', required: true, autocomplete: 'off' });
  const claim = h('form', {
    onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
      const id = /** @type {HTMLInputElement} */ (deviceId).value.trim();
      await call('POST', '/api/v1/devices/claim', { body: { device_id: id, claim_code: /** @type {HTMLInputElement} */ (code).value.trim() } });
      location.hash = `#/devices/${encodeURIComponent(id)}`;
      return `Claimed ${id}.`;
    }),
  },
  h('label', { htmlFor: 'claim-device' }, 'Device id', deviceId),
  h('label', { htmlFor: 'claim-code' }, 'Claim code', code),
  h('button', { type: 'submit' }, 'Claim'));
  show(
    h('h1', {}, 'Your devices'),
    table('Devices', ['Device', 'Model', 'State', 'Firmware', 'Access'], rows),
    h('section', { 'aria-labelledby': 'claim-title' }, h('h2', { id: 'claim-title' }, 'Claim a device'),
      h('p', {}, 'The id and the claim code are on the label of the device.'), claim),
  );
}

/** @param {string} deviceId */
async function devicePage(deviceId) {
  const path = `/api/v1/devices/${encodeURIComponent(deviceId)}`;
  const device = await get(path);
  const may = (/** @type {string} */ action) => device.permissions.includes(action);
  const status = h('dl', {});
  const renderStatus = (/** @type {any} */ current) => status.replaceChildren(
    h('dt', {}, 'State'), h('dd', { className: current.online ? 'online' : 'offline' }, current.online ? 'online' : 'offline'),
    h('dt', {}, 'Model'), h('dd', {}, current.model),
    h('dt', {}, 'Firmware'), h('dd', {}, text(current.firmware_version)),
    h('dt', {}, 'Last seen'), h('dd', {}, when(current.last_seen_at)),
    h('dt', {}, 'Your access'), h('dd', {}, `${current.access}: ${current.permissions.join(', ')}`),
  );
  renderStatus(device);
  const sections = [h('h1', {}, deviceId), h('section', { 'aria-labelledby': 'status-title' }, h('h2', { id: 'status-title' }, 'Status'), status)];
  if (may('read_status')) sections.push(await settingsSection(path, may('write_settings')));
  if (may('send_commands')) sections.push(commandSection(path));
  if (may('read_events')) sections.push(eventsSection(path));
  if (may('read_status')) sections.push(await firmwareSection(path));
  if (may('manage_grants')) sections.push(await grantsSection(path), await accessLogSection(path));
  if (may('manage_ownership')) sections.push(ownershipSection(path, deviceId));
  show(...sections);
  // The device's state and presence change on their own: read them again every two seconds.
  const signal = leaving.signal;
  const timer = setInterval(async () => {
    try { renderStatus(await get(path)); } catch { /* shown on the next page load */ }
  }, 2000);
  signal.addEventListener('abort', () => clearInterval(timer));
}

/**
 * Desired settings as a form (one field per setting, values as JSON), saved with If-Match so
 * that a change made elsewhere meanwhile is not overwritten; the reported ones beside them.
 * @param {string} path
 * @param {boolean} writable
 */
async function settingsSection(path, writable) {
  const section = h('section', { 'aria-labelledby': 'settings-title' });
  /** @type {string | null} */
  let version = null;
  /** @type {Record<string, unknown>} */
  let shownDesired = {};
  const render = async (/** @type {boolean} */ form) => {
    const { body, etag } = await call('GET', `${path}/state`);
    const desired = body.desired.settings ?? {};
    const reported = body.reported.state ?? {};
    const keys = [...new Set([...Object.keys(desired), ...Object.keys(reported)])].sort();
    const reportedTable = table('Settings', ['Setting', 'Desired', 'Reported', 'Status'],
      keys.map((key) => [key, text(desired[key]), h('span', { dataset: { setting: key } }, text(reported[key])), key in (body.delta ?? {}) ? 'not applied yet' : 'applied']));
    if (!form && JSON.stringify(desired) === JSON.stringify(shownDesired)) {
      section.querySelector('table, p.empty')?.replaceWith(reportedTable);
      return;
    }
    // The version the form is based on: a save is refused if the settings moved on since.
    version = etag;
    shownDesired = desired;
    const inputs = keys.filter((key) => key in desired).map((key) => {
      const id = `setting-${key}`;
      return h('label', { htmlFor: id }, key, h('input', { id, name: key, value: JSON.stringify(desired[key]) }));
    });
    const newKey = h('input', { id: 'setting-new-key', name: 'new_key', autocomplete: 'off' });
    const newValue = h('input', { id: 'setting-new-value', name: 'new_value', autocomplete: 'off' });
    const editor = writable ? h('form', {
      'aria-label': 'Desired settings',
      onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
        /** @type {Record<string, unknown>} */
        const next = {};
        for (const input of /** @type {NodeListOf<HTMLInputElement>} */ (editor.querySelectorAll('input[name]'))) {
          if (input.name === 'new_key' || input.name === 'new_value') continue;
          next[input.name] = parseValue(input.value);
        }
        const key = /** @type {HTMLInputElement} */ (newKey).value.trim();
        if (key) next[key] = parseValue(/** @type {HTMLInputElement} */ (newValue).value);
        try {
          await call('PUT', `${path}/state/desired`, { body: next, headers: { 'If-Match': version ?? '*' } });
        } catch (error) {
          if (error instanceof ApiError && error.status === 412) {
            await render(true);
            throw new Error('Someone changed these settings meanwhile; the latest are shown. Make your change again.');
          }
          throw error;
        }
        await render(true);
        return 'Settings saved; the device applies them when it is online.';
      }),
    }, ...inputs,
    h('label', { htmlFor: 'setting-new-key' }, 'New setting', newKey),
    h('label', { htmlFor: 'setting-new-value' }, 'Its value', newValue),
    h('button', { type: 'submit' }, 'Save settings')) : h('p', {}, 'You may read these settings, not change them.');
    section.replaceChildren(h('h2', { id: 'settings-title' }, 'Settings'), reportedTable, editor);
  };
  await render(true);
  const timer = setInterval(() => { render(false).catch(() => undefined); }, 2000);
  leaving.signal.addEventListener('abort', () => clearInterval(timer));
  return section;
}

/** @param {string} value */
function parseValue(value) {
  try { return JSON.parse(value); } catch { return value; }
}

/** @param {string} path */
function commandSection(path) {
  const name = h('input', { id: 'command-name', name: 'name', required: true, autocomplete: 'off' });
  const payload = h('textarea', { id: 'command-payload', name: 'payload', rows: 2 }, '{}');
  const answer = h('p', { role: 'status' });
  const form = h('form', {
    onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
      const { body, status } = await call('POST', `${path}/commands`, {
        body: { name: /** @type {HTMLInputElement} */ (name).value.trim(), payload: parseValue(/** @type {HTMLTextAreaElement} */ (payload).value), wait_seconds: 10 },
      });
      answer.textContent = status === 202 ? `Sent; the device has not answered yet (${body.command_id}).` : `Answered: ${text(body.response)}`;
    }),
  }, h('label', { htmlFor: 'command-name' }, 'Command', name), h('label', { htmlFor: 'command-payload' }, 'Payload (JSON)', payload), h('button', { type: 'submit' }, 'Send'));
  return h('section', { 'aria-labelledby': 'command-title' }, h('h2', { id: 'command-title' }, 'Commands'), form, answer);
}

/** @param {string} path */
function eventsSection(path) {
  const body = h('tbody', { id: 'live-events' });
  const list = h('table', {}, h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'Received'), h('th', { scope: 'col' }, 'Topic'), h('th', { scope: 'col' }, 'Payload'))), body);
  const add = (/** @type {any} */ event, /** @type {boolean} */ first) => {
    const row = h('tr', {},
      h('td', { dataset: { label: 'Received' } }, when(event.received_at)),
      h('td', { dataset: { label: 'Topic' } }, event.topic.split('/').slice(2).join('/')),
      h('td', { className: 'payload', dataset: { label: 'Payload' } }, event.payload === null ? '(binary)' : text(event.payload)));
    if (first) body.prepend(row); else body.append(row);
    while (body.children.length > 50) body.lastElementChild?.remove();
  };
  get(`${path}/events?limit=20`).then(({ events }) => events.forEach((/** @type {any} */ event) => add(event, false))).catch(() => undefined);
  follow(`${path}/events/live`, (event) => add(event, true), leaving.signal).catch((error) => {
    if (!leaving.signal.aborted) say(`Live events stopped: ${error.message}`, true);
  });
  return h('section', { 'aria-labelledby': 'events-title' }, h('h2', { id: 'events-title' }, 'Live events'), h('p', {}, 'Newest first; new ones appear as the device sends them.'), list);
}

/** @param {string} path */
async function firmwareSection(path) {
  const firmware = await get(`${path}/firmware`);
  return h('section', { 'aria-labelledby': 'firmware-title' }, h('h2', { id: 'firmware-title' }, 'Firmware'),
    h('p', {}, `Running ${text(firmware.firmware_version)}.`),
    table('Updates', ['Release', 'State', 'Progress', 'Reason', 'Updated'],
      firmware.updates.map((/** @type {any} */ update) => [update.release_id, update.state, update.progress === null ? '–' : `${update.progress} %`, text(update.reason), when(update.updated_at)])));
}

const GRANTABLE = ['read_status', 'read_events', 'write_settings', 'send_commands', 'manage_firmware'];

/** @param {string} path */
async function grantsSection(path) {
  const section = h('section', { 'aria-labelledby': 'grants-title' });
  const render = async () => {
    const { grants } = await get(`${path}/grants`);
    const rows = grants.map((/** @type {any} */ grant) => [
      text(grant.grantee.email), grant.scopes.join(', '), when(grant.expires_at),
      grant.active ? 'active' : grant.revoked_at ? 'revoked' : 'expired',
      grant.active ? h('button', {
        type: 'button', className: 'quiet', 'aria-label': `Revoke the grant to ${grant.grantee.email}`,
        onclick: async () => {
          try {
            await call('DELETE', `${path}/grants/${encodeURIComponent(grant.grant_id)}`);
            say(`Revoked the grant to ${grant.grantee.email}.`);
            await render();
          } catch (error) { say(error instanceof Error ? error.message : String(error), true); }
        },
      }, 'Revoke') : '',
    ]);
    const email = h('input', { id: 'grant-email', name: 'email', type: 'email', required: true, autocomplete: 'off' });
    const hours = h('input', { id: 'grant-hours', name: 'hours', type: 'number', min: 1, max: 2160, value: 24, required: true });
    const scopes = h('fieldset', {}, h('legend', {}, 'They may'),
      ...GRANTABLE.map((scope) => h('label', {}, h('input', { type: 'checkbox', name: 'scope', value: scope, checked: scope.startsWith('read') }), scope.replace('_', ' '))));
    const form = h('form', {
      onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
        const chosen = [...scopes.querySelectorAll('input:checked')].map((input) => /** @type {HTMLInputElement} */ (input).value);
        const address = /** @type {HTMLInputElement} */ (email).value.trim();
        await call('POST', `${path}/grants`, { body: { email: address, scopes: chosen, expires_in_seconds: Number(/** @type {HTMLInputElement} */ (hours).value) * 3600 } });
        await render();
        return `Granted access to ${address}.`;
      }),
    }, h('label', { htmlFor: 'grant-email' }, "Technician's e-mail", email), h('label', { htmlFor: 'grant-hours' }, 'For hours', hours), scopes, h('button', { type: 'submit' }, 'Grant'));
    section.replaceChildren(h('h2', { id: 'grants-title' }, 'Technicians'), table('Grants', ['Technician', 'May', 'Until', 'State', 'Action'], rows), form);
  };
  await render();
  return section;
}

/** @param {string} path */
async function accessLogSection(path) {
  const { entries } = await get(`${path}/access-log?limit=50`);
  return h('section', { 'aria-labelledby': 'log-title' }, h('h2', { id: 'log-title' }, 'Access log'),
    table('Access log entries', ['When', 'Who', 'What', 'Outcome'],
      entries.map((/** @type {any} */ entry) => [when(entry.at), text(entry.actor.email ?? `${entry.actor.kind} ${entry.actor.id}`), entry.action, entry.outcome])));
}

/**
 * @param {string} path
 * @param {string} deviceId
 */
function ownershipSection(path, deviceId) {
  const email = h('input', { id: 'transfer-email', name: 'email', type: 'email', required: true, autocomplete: 'off' });
  return h('section', { 'aria-labelledby': 'ownership-title' }, h('h2', { id: 'ownership-title' }, 'Ownership'),
    h('form', {
      onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
        const address = /** @type {HTMLInputElement} */ (email).value.trim();
        await call('POST', `${path}/transfer`, { body: { email: address } });
        location.hash = '#/devices';
        return `${deviceId} now belongs to ${address}.`;
      }),
    }, h('label', { htmlFor: 'transfer-email' }, 'Transfer to (e-mail)', email), h('button', { type: 'submit' }, 'Transfer')),
    h('form', {
      onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
        if (!confirm(`Reset ${deviceId} to its factory state? Its settings and grants end.`)) return;
        await call('POST', `${path}/release`, { body: {} });
        location.hash = '#/devices';
        return `Released ${deviceId}.`;
      }),
    }, h('button', { type: 'submit', className: 'quiet' }, 'Release (factory reset)')));
}

async function adminPage() {
  const [devices, users, clients, certificates] = await Promise.all([
    get('/api/v1/admin/devices?limit=100'), get('/api/v1/admin/users?limit=100'),
    get('/api/v1/admin/clients'), get('/api/v1/admin/certificates?expiring_within_days=30'),
  ]);
  const firmware = h('section', { 'aria-labelledby': 'admin-firmware' });
  const rollouts = h('section', { 'aria-labelledby': 'admin-rollouts' });
  show(
    h('h1', {}, 'Administration'),
    h('section', { 'aria-labelledby': 'admin-devices' }, h('h2', { id: 'admin-devices' }, 'Devices'),
      table('Devices', ['Device', 'Model', 'Owner', 'Firmware', 'State'], devices.devices.map((/** @type {any} */ device) => [
        h('a', { href: `#/devices/${encodeURIComponent(device.device_id)}` }, device.device_id), device.model, text(device.owner), text(device.firmware_version), device.online ? 'online' : 'offline']))),
    h('section', { 'aria-labelledby': 'admin-users' }, h('h2', { id: 'admin-users' }, 'Users'),
      table('Users', ['E-mail', 'Role', 'Since'], users.users.map((/** @type {any} */ user) => [user.email, user.role, when(user.created_at)]))),
    h('section', { 'aria-labelledby': 'admin-certificates' }, h('h2', { id: 'admin-certificates' }, 'Certificates expiring within 30 days'),
      table('Certificates', ['Serial', 'Kind', 'Subject', 'Expires'], certificates.certificates.map((/** @type {any} */ certificate) => [
        certificate.serial, certificate.kind, certificate.subject, when(certificate.not_after)]))),
    firmware,
    rollouts,
    h('section', { 'aria-labelledby': 'admin-clients' }, h('h2', { id: 'admin-clients' }, 'OAuth clients'),
      table('Clients', ['Client', 'Name', 'Kind', 'Scopes'], clients.clients.map((/** @type {any} */ client) => [
        client.client_id, client.name, client.kind, client.scope]))),
  );
  await Promise.all([firmwareAdmin(firmware, () => rolloutsAdmin(rollouts)), rolloutsAdmin(rollouts)]);
}

/**
 * Releases, and a form that uploads one (the file is the request body, streamed by the browser).
 * @param {HTMLElement} section
 * @param {() => Promise<void>} changed
 */
async function firmwareAdmin(section, changed) {
  const { releases } = await get('/api/v1/admin/firmware');
  const model = h('input', { id: 'upload-model', name: 'model', required: true, autocomplete: 'off' });
  const version = h('input', { id: 'upload-version', name: 'version', required: true, autocomplete: 'off', placeholder: '1.4.0' });
  const notes = h('input', { id: 'upload-notes', name: 'notes', autocomplete: 'off' });
  const file = h('input', { id: 'upload-file', name: 'file', type: 'file', required: true });
  const form = h('form', {
    onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
      const chosen = /** @type {HTMLInputElement} */ (file).files?.[0];
      if (!chosen) throw new Error('Choose the firmware file.');
      const query = new URLSearchParams({
        model: /** @type {HTMLInputElement} */ (model).value.trim(),
        version: /** @type {HTMLInputElement} */ (version).value.trim(),
        notes: /** @type {HTMLInputElement} */ (notes).value,
      });
      const response = await send('POST', `/api/v1/admin/firmware?${query}`, { raw: chosen, headers: { 'Content-Type': 'application/octet-stream' } });
      const body = await response.json().catch(() => null);
      if (!response.ok) throw new ApiError(response.status, body?.error?.message ?? `${response.status}`);
      await firmwareAdmin(section, changed);
      await changed();
      return `Release ${body.version} for ${body.model} is ready (${body.release_id}).`;
    }),
  },
  h('label', { htmlFor: 'upload-model' }, 'Model', model),
  h('label', { htmlFor: 'upload-version' }, 'Version', version),
  h('label', { htmlFor: 'upload-notes' }, 'Notes', notes),
  h('label', { htmlFor: 'upload-file' }, 'File', file),
  h('button', { type: 'submit' }, 'Upload'));
  section.replaceChildren(h('h2', { id: 'admin-firmware' }, 'Firmware releases'),
    table('Releases', ['Release', 'Model', 'Version', 'Size', 'Made'], releases.map((/** @type {any} */ release) => [
      release.release_id, release.model, release.version, `${release.size} bytes`, when(release.created_at)])),
    form);
}

/** What an admin may do to a rollout in each state. */
const ROLLOUT_STEPS = /** @type {Record<string, string[]>} */ ({ running: ['advance', 'pause', 'abort'], paused: ['resume', 'abort'] });

/** @param {HTMLElement} section */
async function rolloutsAdmin(section) {
  const [{ rollouts }, { releases }] = await Promise.all([get('/api/v1/admin/rollouts'), get('/api/v1/admin/firmware')]);
  const rows = rollouts.map((/** @type {any} */ rollout) => [
    rollout.rollout_id, rollout.release_id, `${rollout.state}${rollout.reason ? ` (${rollout.reason})` : ''}`,
    `${rollout.stage + 1} of ${rollout.stages.length}`,
    `${rollout.succeeded} ok, ${rollout.failed} failed, ${rollout.in_flight} updating of ${rollout.devices}`,
    h('span', {}, ...(ROLLOUT_STEPS[rollout.state] ?? []).map((step) => h('button', {
      type: 'button', className: 'quiet', 'aria-label': `${step} rollout ${rollout.rollout_id}`,
      onclick: async () => {
        try {
          await call('POST', `/api/v1/admin/rollouts/${encodeURIComponent(rollout.rollout_id)}/${step}`, { body: {} });
          say(`Rollout ${rollout.rollout_id}: ${step} done.`);
          await rolloutsAdmin(section);
        } catch (error) { say(error instanceof Error ? error.message : String(error), true); }
      },
    }, step))),
  ]);
  const release = h('select', { id: 'rollout-release', name: 'release_id', required: true },
    ...releases.map((/** @type {any} */ item) => h('option', { value: item.release_id }, `${item.model} ${item.version}`)));
  const stages = h('input', { id: 'rollout-stages', name: 'stages', value: '10,100', required: true, autocomplete: 'off' });
  const tag = h('input', { id: 'rollout-tag', name: 'tag', autocomplete: 'off' });
  const form = h('form', {
    onsubmit: (/** @type {SubmitEvent} */ event) => submit(event, async () => {
      /** @type {Record<string, unknown>} */
      const body = {
        release_id: /** @type {HTMLSelectElement} */ (release).value,
        stages: /** @type {HTMLInputElement} */ (stages).value.split(',').map((part) => Number(part.trim())),
      };
      const chosenTag = /** @type {HTMLInputElement} */ (tag).value.trim();
      if (chosenTag) body.tag = chosenTag;
      const { body: made } = await call('POST', '/api/v1/admin/rollouts', { body });
      await rolloutsAdmin(section);
      return `Rollout ${made.rollout_id} started: ${made.offered} of ${made.devices} devices offered.`;
    }),
  },
  h('label', { htmlFor: 'rollout-release' }, 'Release', release),
  h('label', { htmlFor: 'rollout-stages' }, 'Stages (percent)', stages),
  h('label', { htmlFor: 'rollout-tag' }, 'Only devices tagged (optional)', tag),
  h('button', { type: 'submit' }, 'Start rollout'));
  section.replaceChildren(h('h2', { id: 'admin-rollouts' }, 'Rollouts'),
    table('Rollouts', ['Rollout', 'Release', 'State', 'Stage', 'Devices', 'Action'], rows),
    releases.length ? form : h('p', {}, 'Upload a release to start a rollout.'));
}

// ---- Navigation ------------------------------------------------------------------------------

function navigation() {
  const links = [['#/devices', 'Devices']];
  if (isAdmin()) links.push(['#/admin', 'Administration']);
  const nav = /** @type {HTMLElement} */ (document.getElementById('nav'));
  nav.replaceChildren(
    ...links.map(([href, label]) => h('li', {}, h('a', { href, 'aria-current': location.hash.startsWith(href) ? 'page' : false }, label))),
    h('li', {}, h('a', { href: '/account' }, 'Account')),
    h('li', {}, h('button', { type: 'button', className: 'quiet', onclick: () => logout() }, 'Log out')),
  );
}

async function route() {
  leaving.abort();
  leaving = new AbortController();
  navigation();
  const hash = location.hash || '#/devices';
  const device = hash.match(/^#\/devices\/([^/]+)$/);
  try {
    if (device) await devicePage(decodeURIComponent(device[1]));
    else if (hash === '#/admin') await adminPage();
    else await devicesPage();
  } catch (error) {
    const message = error instanceof ApiError && error.status === 404 ? 'There is no such device, or it is not yours.' : error instanceof Error ? error.message : String(error);
    show(h('h1', {}, 'Something went wrong'), h('p', { className: 'error' }, message), h('p', {}, h('a', { href: '#/devices' }, 'Back to your devices')));
  }
}

async function start() {
  try {
    if (await finishLogin() && !loggedIn()) return; // on the way to the login again
  } catch (error) {
    show(h('h1', {}, 'Not logged in'), h('p', { className: 'error' }, error instanceof Error ? error.message : String(error)),
      h('p', {}, h('a', { href: '/console/' }, 'Log in again')));
    return;
  }
  if (!loggedIn()) {
    await startLogin();
    return;
  }
  const userinfo = await get('/oauth2/userinfo').catch(() => ({}));
  const who = /** @type {HTMLElement} */ (document.getElementById('who'));
  who.textContent = userinfo.email ? `Logged in as ${userinfo.email}` : '';
  window.addEventListener('hashchange', () => { say(''); route(); });
  await route();
}

start();
