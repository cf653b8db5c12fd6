// keybroker admin page: a small client of the v1 API. The bearer token is
// kept in sessionStorage (never a cookie or a URL); key values are read
// from password inputs, sent once, and cleared from the DOM.

const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);
let me = null;        // GET /v1/whoami
let providers = [];   // GET /v1/providers
let current = null;   // open workspace id

async function api(method, path, body) {
  const headers = { Authorization: 'Bearer ' + store.getItem('keybroker.token') };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = new Error((data.error && data.error.message) || resp.statusText);
    e.status = resp.status;
    throw e;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const c of children) node.append(c);
  return node;
}

const canEdit = () => me && (me.role === 'operator' || me.role === 'admin');

async function signIn(token) {
  store.setItem('keybroker.token', token);
  try {
    me = await api('GET', '/v1/whoami');
  } catch (e) {
    store.removeItem('keybroker.token');
    throw e;
  }
  providers = (await api('GET', '/v1/providers')).providers;
  $('who').textContent = `Signed in as ${me.tokenId}, role ${me.role}` +
    (me.workspaces.length ? `, workspaces ${me.workspaces.join(', ')}` : '');
  $('who').hidden = false;
  $('signout').hidden = false;
  $('signin-section').hidden = true;
  $('workspaces-section').hidden = false;
  const list = $('workspace-list');
  list.replaceChildren();
  for (const ws of me.workspaces) {
    list.append(el('button', { type: 'button', 'data-workspace': ws, onclick: () => openWorkspace(ws) }, ws));
  }
  $('open-workspace').hidden = me.role !== 'operator';
  const last = store.getItem('keybroker.workspace');
  if (last && (me.role === 'operator' || me.workspaces.includes(last))) await openWorkspace(last);
  else if (me.workspaces.length === 1) await openWorkspace(me.workspaces[0]);
}

function signOut() {
  store.clear();
  location.reload();
}

async function openWorkspace(ws) {
  current = ws;
  store.setItem('keybroker.workspace', ws);
  $('workspace-title').textContent = 'Workspace ' + ws;
  $('workspace-section').hidden = false;
  $('history-section').hidden = true;
  await renderSettings();
  await renderKeys();
  if (canEdit()) await renderAudit();
}

// settings of the open workspace: whether a call without a key of its own
// falls back to the platform's hosted key (billed) or fails.
let settings = { hostedFallback: true, inherit: true, organization: null };

async function renderSettings() {
  settings = await api('GET', `/v1/workspaces/${encodeURIComponent(current)}/settings`);
  $('fallback-text').textContent = settings.hostedFallback
    ? "Calls for a provider without a workspace key use the platform's hosted key, billed at hosted rates."
    : 'Calls for a provider without a workspace key fail: the hosted fallback is off, so nothing is billed at hosted rates.';
  $('org-text').textContent = settings.organization
    ? `The workspace belongs to the organization ${settings.organization}.`
    : 'The workspace belongs to no organization.';
  const toggle = $('fallback-toggle');
  toggle.hidden = !canEdit();
  toggle.textContent = settings.hostedFallback ? 'Turn the hosted fallback off (fail closed)' : 'Turn the hosted fallback on (billed)';
}

$('fallback-toggle').addEventListener('click', async () => {
  $('settings-error').textContent = '';
  try {
    await api('PUT', `/v1/workspaces/${encodeURIComponent(current)}/settings`, { hostedFallback: !settings.hostedFallback });
    await renderSettings();
    await renderKeys();
    await renderAudit();
  } catch (e) {
    $('settings-error').textContent = e.message;
  }
});

// withoutKey says in plain words what calls do for a provider the
// workspace has no key of (from GET .../effective).
function withoutKey(e) {
  if (e && e.scope === 'hosted') return "Using hosted key: calls are billed at the platform's hosted rates";
  if (e && e.reason === 'hosted_fallback_off') return 'No key: calls fail (hosted fallback is off)';
  return 'No key: calls fail (the platform has no hosted key for this provider)';
}

function when(iso) { return new Date(iso).toISOString().replace('T', ' ').slice(0, 19) + ' UTC'; }

async function renderKeys() {
  const keys = (await api('GET', `/v1/workspaces/${encodeURIComponent(current)}/keys`)).keys;
  const byProvider = Object.fromEntries(keys.map((k) => [k.provider, k]));
  const effective = Object.fromEntries((await api('GET', `/v1/workspaces/${encodeURIComponent(current)}/effective`)).providers
    .map((e) => [e.provider, e]));
  const tbody = $('keys');
  tbody.replaceChildren();
  for (const p of providers) {
    const k = byProvider[p.id];
    const status = k
      ? el('td', { 'data-status': p.id },
          el('span', { class: 'masked', 'data-masked': p.id, text: k.maskedKey }),
          el('div', { text: `version ${k.version}, changed by ${k.updatedBy} at ${when(k.updatedAt)}` }),
          el('div', { 'data-usage': p.id, text: k.lastUsedAt
            ? `${k.resolves} resolves, last used ${when(k.lastUsedAt)}${k.idle ? ' (idle: unused for 90 days)' : ''}`
            : `never used${k.idle ? ' (idle: created over 90 days ago)' : ''}` }))
      : el('td', { 'data-status': p.id }, el('span', { class: 'hosted', text: withoutKey(effective[p.id]) }));
    const actions = el('td');
    if (canEdit()) actions.append(editControls(p, k));
    tbody.append(el('tr', { 'data-provider': p.id }, el('th', { scope: 'row', text: p.displayName }), status, actions));
  }
}

function editControls(p, k) {
  const box = el('div', { class: 'edit' });
  const inputId = 'key-' + p.id, errId = 'err-' + p.id;
  const input = el('input', { id: inputId, type: 'password', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': errId + ' hint-' + p.id });
  const err = el('p', { class: 'error', id: errId, role: 'alert' });
  const form = el('form', { 'data-form': p.id, method: 'post' },
    el('label', { for: inputId, text: (k ? 'Replace' : 'Add') + ` ${p.displayName} key` }),
    input,
    el('span', { class: 'hint', id: 'hint-' + p.id, text: ' ' + p.formatHint + ' ' }),
    el('button', { type: 'submit', text: k ? 'Replace key' : 'Save key' }),
    err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = input.value;
    input.value = '';           // the key leaves the DOM before the request returns
    err.textContent = '';
    try {
      await api('PUT', `/v1/workspaces/${encodeURIComponent(current)}/keys/${p.id}`, { apiKey: value });
      await renderKeys();
      await renderAudit();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  box.append(form);
  if (k) {
    const warn = el('p', { class: 'warning', hidden: '' });
    const confirmBtn = el('button', { type: 'button', hidden: '', 'data-confirm-delete': p.id, text: 'Yes, delete the key' });
    const cancelBtn = el('button', { type: 'button', hidden: '', text: 'Cancel' });
    const destroy = el('input', { type: 'checkbox', id: `destroy-${p.id}`, 'data-destroy': p.id });
    const destroyLabel = el('label', { for: `destroy-${p.id}`, hidden: '',
      text: ' Also destroy every earlier version in Vault, for good' });
    destroyLabel.prepend(destroy);
    const delBtn = el('button', { type: 'button', 'data-delete': p.id, text: 'Delete key' });
    delBtn.addEventListener('click', () => {
      warn.textContent = `Delete the ${p.displayName} key of ${current}? Calls will fall back to the platform's hosted key, billed to the workspace. ` +
        'A plain delete removes the current version only: the older versions stay in Vault, readable and restorable by its operators.';
      warn.hidden = false; confirmBtn.hidden = false; cancelBtn.hidden = false; destroyLabel.hidden = false;
      confirmBtn.focus();
    });
    cancelBtn.addEventListener('click', () => {
      warn.hidden = true; confirmBtn.hidden = true; cancelBtn.hidden = true; destroyLabel.hidden = true; delBtn.focus();
    });
    confirmBtn.addEventListener('click', async () => {
      try {
        const query = destroy.checked ? '?destroy=true' : '';
        await api('DELETE', `/v1/workspaces/${encodeURIComponent(current)}/keys/${p.id}${query}`);
        await renderKeys();
        await renderAudit();
      } catch (e) {
        err.textContent = e.message;
      }
    });
    const histBtn = el('button', { type: 'button', 'data-history': p.id, text: 'Version history',
      onclick: () => renderHistory(p) });
    box.append(delBtn, histBtn, warn, destroyLabel, confirmBtn, cancelBtn);
  }
  return box;
}

async function renderHistory(p) {
  const versions = (await api('GET', `/v1/workspaces/${encodeURIComponent(current)}/keys/${p.id}/versions`)).versions;
  $('history-title').textContent = `${p.displayName} key versions`;
  const list = $('history');
  list.replaceChildren();
  for (const v of versions) {
    const state = v.current ? 'current' : v.destroyed ? 'destroyed' : v.deletedAt ? 'deleted' : 'available';
    const item = el('li', { text: `version ${v.version}, ${when(v.createdAt)}, ${state} ` });
    if (!v.current && state === 'available') {
      item.append(el('button', { type: 'button', 'data-rollback': String(v.version), text: `Roll back to version ${v.version}`,
        onclick: async () => {
          await api('POST', `/v1/workspaces/${encodeURIComponent(current)}/keys/${p.id}/rollback`, { version: v.version });
          await renderKeys();
          await renderHistory(p);
          await renderAudit();
        } }));
    }
    list.append(item);
  }
  $('history-section').hidden = false;
}

async function renderAudit() {
  const page = await api('GET', `/v1/workspaces/${encodeURIComponent(current)}/audit?limit=20`);
  const list = $('audit');
  list.replaceChildren();
  for (const e of page.events) {
    list.append(el('li', { text: `${when(e.occurredAt)} ${e.action} ${e.provider || ''} ${e.outcome} by ${e.actor}` +
      (e.version ? ` (version ${e.version})` : '') }));
  }
  $('audit-section').hidden = false;
}

$('signin').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  const input = $('token');
  const token = input.value.trim();
  input.value = '';
  $('signin-error').textContent = '';
  try {
    await signIn(token);
  } catch (e) {
    $('signin-error').textContent = e.status === 401 ? 'This token is unknown, revoked or expired.' : e.message;
  }
});
$('signout').addEventListener('click', signOut);
$('open-workspace').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  await openWorkspace($('workspace-id').value.trim());
});

if (store.getItem('keybroker.token')) {
  signIn(store.getItem('keybroker.token')).catch(() => store.removeItem('keybroker.token'));
}
