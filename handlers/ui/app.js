// keybroker admin page: a small client of the v1 API. The bearer token is
// kept in sessionStorage (never a cookie or a URL); key values are read
// from password inputs, sent once, and cleared from the DOM.

const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);
let me = null;        // GET /v1/whoami
let providers = [];   // GET /v1/providers
let current = null;   // the open scope: { kind: 'workspace'|'organization', id }

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
const base = () => (current.kind === 'organization' ? '/v1/organizations/' : '/v1/workspaces/') + encodeURIComponent(current.id);
const poolPath = (p) => `${base()}/providers/${p}/keys`;
const keyPath = (p, k) => `${poolPath(p)}/${encodeURIComponent(k)}`;

async function signIn(token) {
  store.setItem('keybroker.token', token);
  try {
    me = await api('GET', '/v1/whoami');
  } catch (e) {
    store.removeItem('keybroker.token');
    throw e;
  }
  providers = (await api('GET', '/v1/providers')).providers;
  const scopes = [...me.workspaces, ...me.organizations.map((o) => 'organization ' + o)];
  $('who').textContent = `Signed in as ${me.tokenId}, role ${me.role}` + (scopes.length ? `, ${scopes.join(', ')}` : '');
  $('who').hidden = false;
  $('signout').hidden = false;
  $('signin-section').hidden = true;
  $('workspaces-section').hidden = false;
  await renderScopes('');
  $('open-workspace').hidden = me.role !== 'operator';
  $('open-organization').hidden = me.role !== 'operator';
  // The URL names the open scope (#/workspace/ws1), so a link or a reload
  // lands there; else the last one of this tab.
  const fromURL = scopeOfHash();
  const last = fromURL || JSON.parse(store.getItem('keybroker.scope') || 'null');
  const reachable = (s) => me.role === 'operator' || (s.kind === 'workspace' ? me.workspaces : me.organizations).includes(s.id);
  if (last && reachable(last)) await openScope(last).catch(showOpenError);
  else if (me.workspaces.length + me.organizations.length === 1) {
    await openScope(me.workspaces.length ? { kind: 'workspace', id: me.workspaces[0] } : { kind: 'organization', id: me.organizations[0] });
  }
}

const idRule = /^[a-z0-9][a-z0-9_-]{0,62}$/;

function scopeOfHash() {
  const m = location.hash.match(/^#\/(workspace|organization)\/([^/]+)$/);
  return m && idRule.test(m[2]) ? { kind: m[1], id: m[2] } : null;
}

// renderScopes lists the scopes the token may open (GET /v1/scopes),
// matching query; more appends the next page.
let scopeCursor = '';
let scopeSeq = 0; // only the latest search's answer is shown
async function renderScopes(query, more = false) {
  const seq = ++scopeSeq;
  const list = $('workspace-list');
  const params = new URLSearchParams({ limit: '50' });
  if (query) params.set('q', query);
  if (more && scopeCursor) params.set('cursor', scopeCursor);
  const page = await api('GET', '/v1/scopes?' + params);
  if (seq !== scopeSeq) return;
  if (!more) list.replaceChildren();
  for (const sc of page.scopes) {
    const label = (sc.kind === 'workspace' ? 'Workspace ' : 'Organization ') + sc.id;
    list.append(el('button', { type: 'button', 'data-scope': `${sc.kind}/${sc.id}`, [`data-${sc.kind}`]: sc.id,
      onclick: () => openScope({ kind: sc.kind, id: sc.id }).catch(showOpenError) }, label));
  }
  if (!list.childElementCount) list.append(el('p', { class: 'hint', text: query ? `Nothing matches "${query}".` : 'No workspace or organization yet.' }));
  scopeCursor = page.nextCursor || '';
  $('scope-more').hidden = !scopeCursor;
  list.dataset.query = query; // what the list shows now
}
$('scope-search').addEventListener('input', () => renderScopes($('scope-search').value.trim()).catch(showOpenError));
$('scope-search-form').addEventListener('submit', (ev) => ev.preventDefault());
$('scope-more').addEventListener('click', () => renderScopes($('scope-search').value.trim(), true).catch(showOpenError));

function showOpenError(e) {
  $('workspace-section').hidden = true;
  current = null;
  $('open-error').textContent = e.message;
}

function signOut() {
  store.clear();
  location.reload();
}

async function openScope(scope) {
  $('open-error').textContent = '';
  if (!idRule.test(scope.id)) {
    throw new Error(`"${scope.id}" is not a ${scope.kind} id: lower-case letters, digits, "-" and "_", starting with a letter or digit`);
  }
  current = scope;
  store.setItem('keybroker.scope', JSON.stringify(scope));
  history.replaceState(null, '', `#/${scope.kind}/${scope.id}`);
  const ws = scope.kind === 'workspace';
  $('workspace-title').textContent = (ws ? 'Workspace ' : 'Organization ') + scope.id;
  $('scope-hint').textContent = ws
    ? "Keys are stored in Vault; this page never shows one. Calls made with the workspace's own keys, or its organization's, are not billed by the platform."
    : "Keys are stored in Vault; this page never shows one. The organization's workspaces use these keys when they have no usable key of their own (and inherit), without being billed by the platform.";
  $('workspace-section').hidden = false;
  $('history-section').hidden = true;
  $('settings-section').hidden = !ws;
  $('linked-section').hidden = ws;
  if (ws) await renderSettings();
  else await renderLinked();
  await renderKeys();
  if (canEdit()) await renderAudit();
}

// settings of the open workspace: its organization, whether it inherits
// the organization's keys, and whether a call without a usable key falls
// back to the platform's hosted keys (billed) or fails.
let settings = { hostedFallback: true, inherit: true, organization: null };

async function renderSettings() {
  settings = await api('GET', `${base()}/settings`);
  $('org-text').textContent = settings.organization
    ? `The workspace belongs to the organization ${settings.organization}.`
    : 'The workspace belongs to no organization.';
  $('inherit-text').textContent = !settings.organization ? ''
    : settings.inherit ? `Providers without a usable workspace key use ${settings.organization}'s keys (not billed by the platform).`
      : `The workspace does not use ${settings.organization}'s keys.`;
  $('fallback-text').textContent = settings.hostedFallback
    ? "Calls for a provider without a usable key of the workspace (or inherited) use the platform's hosted key, billed at hosted rates."
    : 'Calls for a provider without a usable key of the workspace (or inherited) fail: the hosted fallback is off, so nothing is billed at hosted rates.';
  const toggle = $('fallback-toggle');
  toggle.hidden = !canEdit();
  toggle.textContent = settings.hostedFallback ? 'Turn the hosted fallback off (fail closed)' : 'Turn the hosted fallback on (billed)';
  const inherit = $('inherit-toggle');
  inherit.hidden = !canEdit() || !settings.organization;
  inherit.textContent = settings.inherit ? `Stop using ${settings.organization}'s keys` : `Use ${settings.organization}'s keys`;
}

async function changeSettings(change) {
  $('settings-error').textContent = '';
  try {
    await api('PUT', `${base()}/settings`, change);
    await renderSettings();
    await renderKeys();
    await renderAudit();
  } catch (e) {
    $('settings-error').textContent = e.message;
  }
}
$('fallback-toggle').addEventListener('click', () => changeSettings({ hostedFallback: !settings.hostedFallback }));
$('inherit-toggle').addEventListener('click', () => changeSettings({ inherit: !settings.inherit }));

async function renderLinked() {
  const list = $('linked');
  list.replaceChildren();
  try {
    const linked = (await api('GET', `${base()}/workspaces`)).workspaces;
    for (const w of linked) {
      list.append(el('li', { 'data-linked': w.workspace, text: `${w.workspace}: ` +
        (w.inherit ? "uses these keys when it has no usable key of its own" : "linked, but does not use these keys") }));
    }
    if (!linked.length) list.append(el('li', { text: 'No workspace is linked to this organization (an operator links them).' }));
  } catch (e) {
    list.append(el('li', { class: 'error', text: e.message }));
  }
}

// servedBy says in plain words what serves a workspace's calls for a
// provider (from GET .../effective).
function servedBy(e) {
  if (!e) return '';
  const n = e.usableKeys === 1 ? '1 usable key' : `${e.usableKeys} usable keys`;
  switch (e.scope) {
    case 'workspace': return `Calls use the workspace's own keys (${n}; BYOK, not billed by the platform)`;
    case 'organization': return `Calls use organization ${e.scopeId}'s keys (${n}; BYOK, not billed by the platform)`;
    case 'hosted': return "Using hosted key: calls are billed at the platform's hosted rates";
  }
  if (e.reason === 'hosted_fallback_off') return 'No key: calls fail (hosted fallback is off)';
  if (e.reason === 'hosted_keys_unavailable') return "No key: calls fail (the platform's hosted keys are disabled)";
  return 'No key: calls fail (the platform has no hosted key for this provider)';
}

function when(iso) { return new Date(iso).toISOString().replace('T', ' ').slice(0, 19) + ' UTC'; }

async function renderKeys() {
  const all = await Promise.all(providers.map((p) => api('GET', poolPath(p.id)).then((r) => r.keys)));
  let effective = {};
  if (current.kind === 'workspace') {
    effective = Object.fromEntries((await api('GET', `${base()}/effective`)).providers.map((e) => [e.provider, e]));
  }
  const tbody = $('keys');
  tbody.replaceChildren();
  providers.forEach((p, i) => {
    const pool = all[i];
    const status = current.kind === 'workspace' ? servedBy(effective[p.id])
      : pool.length ? `${pool.filter((k) => k.state === 'active').length} of ${pool.length} keys active` : 'No key';
    const list = el('ul', { class: 'pool', 'data-pool': p.id });
    pool.forEach((k, j) => list.append(keyItem(p, k, pool, j)));
    const keysCell = el('td', {}, list);
    if (canEdit()) keysCell.append(addForm(p, pool));
    tbody.append(el('tr', { 'data-provider': p.id }, el('th', { scope: 'row', text: p.displayName }),
      el('td', { 'data-status': p.id }, el('span', { class: 'hosted', text: status })), keysCell));
  });
}

// keyItem is one key of a pool: what it is, how it serves, and (for
// admins) what can be done with it.
function keyItem(p, k, pool, j) {
  const id = `${p.id}/${k.keyId}`;
  const usage = k.lastUsedAt
    ? `${k.resolves} resolves, last used ${when(k.lastUsedAt)}${k.idle ? ' (idle: unused for 90 days)' : ''}`
    : `never used${k.idle ? ' (idle: created over 90 days ago)' : ''}`;
  const item = el('li', { 'data-key': id, class: k.state === 'disabled' ? 'disabled' : '' },
    el('strong', { 'data-name': id, text: k.name || k.keyId }), ' ',
    el('span', { class: 'masked', 'data-masked': id, text: k.maskedKey }), ' ',
    el('span', { class: 'badge ' + (k.health || 'healthy'), 'data-health': id, text: healthInWords(k) }),
    el('div', { text: `key id ${k.keyId}, priority ${k.priority}, ${k.state}` +
      (k.models.length ? `, only for ${k.models.join(', ')}` : '') }),
    el('div', { text: `version ${k.version}, changed by ${k.updatedBy} at ${when(k.updatedAt)}` }),
    el('div', { 'data-usage': id, text: usage }));
  if (canEdit()) item.append(keyControls(p, k, pool, j));
  return item;
}

// healthInWords is a key's health badge: healthy, cooling down until ...,
// failing: refused by the provider at ....
function healthInWords(k) {
  if (k.health === 'cooling_down') return `cooling down until ${k.cooldownUntil ? when(k.cooldownUntil) : 'soon'}`;
  if (k.health === 'failing') return `failing: refused by the provider${k.healthChangedAt ? ' at ' + when(k.healthChangedAt) : ''}` +
    (k.healthReason ? ` (${k.healthReason})` : '');
  return 'healthy';
}

function keyControls(p, k, pool, j) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const box = el('div', { class: 'edit' });
  const err = el('p', { class: 'error', id: 'err-' + slug, role: 'alert' });
  const act = (fn) => async () => {
    err.textContent = '';
    try {
      await fn();
      await renderKeys();
      await renderAudit();
    } catch (e) {
      err.textContent = e.message;
    }
  };
  // Rotate: a new value for this key.
  const input = el('input', { id: 'rotate-' + slug, type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'err-' + slug });
  const rotate = el('form', { 'data-rotate': id, method: 'post' },
    el('label', { for: 'rotate-' + slug, text: `Replace the key ${k.name || k.keyId}` }), input,
    el('button', { type: 'submit', text: 'Replace key' }));
  rotate.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const value = input.value;
    input.value = '';           // the key leaves the DOM before the request returns
    act(() => api('PUT', keyPath(p.id, k.keyId), { apiKey: value }))();
  });
  // Rename.
  const nameInput = el('input', { id: 'name-' + slug, autocomplete: 'off', value: k.name, maxlength: '120' });
  const rename = el('form', { 'data-rename': id, method: 'post' },
    el('label', { for: 'name-' + slug, text: 'Name' }), nameInput, el('button', { type: 'submit', text: 'Rename' }));
  rename.addEventListener('submit', (ev) => {
    ev.preventDefault();
    act(() => api('PATCH', keyPath(p.id, k.keyId), { name: nameInput.value }))();
  });
  // Reorder: serve before the key above, or after the key below.
  const move = async (other, earlier) => {
    if (!earlier) return api('PATCH', keyPath(p.id, k.keyId), { priority: Math.min(1000, other.priority + 1) });
    if (other.priority === 0) await api('PATCH', keyPath(p.id, other.keyId), { priority: 1 });
    return api('PATCH', keyPath(p.id, k.keyId), { priority: Math.max(0, other.priority - 1) });
  };
  const up = el('button', { type: 'button', 'data-up': id, text: 'Serve earlier', 'aria-label': `Serve ${k.name || k.keyId} earlier` });
  const down = el('button', { type: 'button', 'data-down': id, text: 'Serve later', 'aria-label': `Serve ${k.name || k.keyId} later` });
  up.disabled = j === 0;
  down.disabled = j === pool.length - 1;
  up.addEventListener('click', act(() => move(pool[j - 1], true)));
  down.addEventListener('click', act(() => move(pool[j + 1], false)));
  const toggle = el('button', { type: 'button', 'data-toggle-state': id,
    text: k.state === 'active' ? 'Disable' : 'Enable',
    onclick: act(() => api('PATCH', keyPath(p.id, k.keyId), { state: k.state === 'active' ? 'disabled' : 'active' })) });
  // Delete, with a confirmation that says what it leaves behind.
  const warn = el('p', { class: 'warning', hidden: '' });
  const confirmBtn = el('button', { type: 'button', hidden: '', 'data-confirm-delete': id, text: 'Yes, delete the key' });
  const cancelBtn = el('button', { type: 'button', hidden: '', text: 'Cancel' });
  const destroy = el('input', { type: 'checkbox', id: `destroy-${slug}`, 'data-destroy': id });
  const destroyLabel = el('label', { for: `destroy-${slug}`, hidden: '', text: ' Also destroy every earlier version in Vault, for good' });
  destroyLabel.prepend(destroy);
  const delBtn = el('button', { type: 'button', 'data-delete': id, text: 'Delete key' });
  delBtn.addEventListener('click', () => {
    const others = pool.filter((o) => o.keyId !== k.keyId && o.state === 'active').length;
    const next = others ? `The pool's ${others} other active key(s) serve instead.`
      : current.kind === 'workspace' ? 'Calls will then use the next source the settings allow: the organization\'s keys, else the platform\'s hosted key (billed), else fail.'
        : "The organization's workspaces will then use the next source their settings allow.";
    warn.textContent = `Delete ${k.name || k.keyId} (${p.displayName})? ${next} ` +
      'A plain delete removes the current version only: the older versions stay in Vault, readable and restorable by its operators.';
    warn.hidden = false; confirmBtn.hidden = false; cancelBtn.hidden = false; destroyLabel.hidden = false;
    confirmBtn.focus();
  });
  cancelBtn.addEventListener('click', () => {
    warn.hidden = true; confirmBtn.hidden = true; cancelBtn.hidden = true; destroyLabel.hidden = true; delBtn.focus();
  });
  confirmBtn.addEventListener('click', act(() => api('DELETE', keyPath(p.id, k.keyId) + (destroy.checked ? '?destroy=true' : ''))));
  const histBtn = el('button', { type: 'button', 'data-history': id, text: 'Version history', onclick: () => renderHistory(p, k) });
  const verdict = el('p', { class: 'result', 'data-test-result': id, role: 'status' });
  const testBtn = el('button', { type: 'button', 'data-test': id, text: 'Test key' });
  testBtn.addEventListener('click', async () => {
    err.textContent = '';
    verdict.textContent = `Asking ${p.displayName}...`;
    try {
      const r = await api('POST', `${keyPath(p.id, k.keyId)}/test`);
      const words = { accepted: 'accepted the key', refused: 'refused the key', rate_limited: 'knows the key but rate limits it', unreachable: 'could not be asked' };
      verdict.textContent = `${p.displayName} ${words[r.result] || r.result} (${r.detail}); the key is ${r.health.replace('_', ' ')}.`;
      await renderKeys();
      document.querySelector(`[data-test-result="${CSS.escape(id)}"]`)?.replaceWith(verdict);
      await renderAudit();
    } catch (e) {
      verdict.textContent = '';
      err.textContent = e.message;
    }
  });
  box.append(rotate, rename, up, down, toggle, testBtn, delBtn, histBtn, verdict, warn, destroyLabel, confirmBtn, cancelBtn, err);
  return box;
}

// addForm adds a key to a provider's pool.
function addForm(p, pool) {
  const input = el('input', { id: 'key-' + p.id, type: 'password', autocomplete: 'off', spellcheck: 'false',
    'aria-describedby': 'err-' + p.id + ' hint-' + p.id });
  const name = el('input', { id: 'newname-' + p.id, autocomplete: 'off', maxlength: '120' });
  const priority = el('input', { id: 'priority-' + p.id, type: 'number', min: '0', max: '1000', value: '100' });
  const err = el('p', { class: 'error', id: 'err-' + p.id, role: 'alert' });
  const form = el('form', { 'data-form': p.id, method: 'post' },
    el('label', { for: 'key-' + p.id, text: `Add a ${p.displayName} key` + (pool.length ? ` (${pool.length} of 10)` : '') }), input,
    el('span', { class: 'hint', id: 'hint-' + p.id, text: ' ' + p.formatHint + ' ' }),
    el('label', { for: 'newname-' + p.id, text: 'Name (optional)' }), name,
    el('label', { for: 'priority-' + p.id, text: 'Priority (lower serves first)' }), priority,
    el('button', { type: 'submit', text: 'Add key' }), err);
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const value = input.value;
    input.value = '';           // the key leaves the DOM before the request returns
    err.textContent = '';
    const body = { apiKey: value, priority: Number(priority.value) };
    if (name.value) body.name = name.value;
    if (!pool.length) body.keyId = 'default'; // the v1 routes' key
    try {
      await api('POST', poolPath(p.id), body);
      await renderKeys();
      await renderAudit();
    } catch (e) {
      err.textContent = e.message;
    }
  });
  return form;
}

async function renderHistory(p, k) {
  const versions = (await api('GET', `${keyPath(p.id, k.keyId)}/versions`)).versions;
  $('history-title').textContent = `${p.displayName} key ${k.name || k.keyId}: versions`;
  const list = $('history');
  list.replaceChildren();
  for (const v of versions) {
    const state = v.current ? 'current' : v.destroyed ? 'destroyed' : v.deletedAt ? 'deleted' : 'available';
    const item = el('li', { text: `version ${v.version}, ${when(v.createdAt)}, ${state} ` });
    if (!v.current && state === 'available') {
      item.append(el('button', { type: 'button', 'data-rollback': String(v.version), text: `Roll back to version ${v.version}`,
        onclick: async () => {
          await api('POST', `${keyPath(p.id, k.keyId)}/rollback`, { version: v.version });
          await renderKeys();
          await renderHistory(p, k);
          await renderAudit();
        } }));
    }
    list.append(item);
  }
  $('history-section').hidden = false;
}

async function renderAudit() {
  const page = await api('GET', `${base()}/audit?limit=20`);
  const list = $('audit');
  list.replaceChildren();
  for (const e of page.events) {
    const key = e.provider ? ` ${e.provider}${e.keyId ? '/' + e.keyId : ''}` : '';
    list.append(el('li', { text: `${when(e.occurredAt)} ${e.action}${key} ${e.outcome} by ${e.actor}` +
      (e.version ? ` (version ${e.version})` : '') + (e.count > 1 ? ` ×${e.count}` : '') }));
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
for (const [form, input, kind] of [['open-workspace', 'workspace-id', 'workspace'], ['open-organization', 'organization-id', 'organization']]) {
  $(form).addEventListener('submit', async (ev) => {
    ev.preventDefault();
    $('open-error').textContent = '';
    try {
      await openScope({ kind, id: $(input).value.trim() });
    } catch (e) {
      showOpenError(e);
    }
  });
}

if (store.getItem('keybroker.token')) {
  signIn(store.getItem('keybroker.token')).catch(() => store.removeItem('keybroker.token'));
}
