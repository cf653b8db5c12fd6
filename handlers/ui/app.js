// keybroker admin page: a small client of the v1 API. A person signs in
// with their identity provider (a session in an HttpOnly cookie the page
// never sees; every call carries the CSRF header), or pastes an API token,
// kept in sessionStorage (never a cookie or a URL); key values are read
// from password inputs, sent once, and cleared from the DOM. A token
// created here is shown once and dropped from the page when dismissed.

const store = window.sessionStorage;
const $ = (id) => document.getElementById(id);
let me = null;        // GET /v1/whoami
let bySession = false; // signed in by the session cookie, not a token
let signInConfig = null; // GET /auth/config (null: no sign-in with an identity provider here)
let providers = [];   // GET /v1/providers
let current = null;   // the open scope: { kind: 'workspace'|'organization', id }

// api calls keybroker. With a token, it goes in the Authorization header;
// without one the browser sends the session cookie (same origin), and the
// CSRF header says the call comes from this page.
async function api(method, path, body) {
  const token = store.getItem('keybroker.token');
  const headers = token ? { Authorization: 'Bearer ' + token } : { [(signInConfig && signInConfig.csrfHeader) || 'X-Keybroker-Csrf']: '1' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  let resp;
  try {
    resp = await fetch(path, { method, headers, credentials: 'same-origin', body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new Error('keybroker could not be reached; check the connection and try again');
  }
  if (resp.status === 204) return null;
  const data = await resp.json().catch(() => ({}));
  if (!resp.ok) {
    const e = new Error((data.error && data.error.message) || resp.statusText);
    e.status = resp.status;
    if (resp.status === 401 && bySession && me) sessionEnded();
    throw e;
  }
  return data;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'text') node.textContent = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) node.append(c);
  return node;
}

// roleIn is the caller's role in scope: a person's own role there
// (whoami's scopedRoles: admin of one workspace, reader of another), a
// token's one role in every scope it reaches; '' for none.
function roleIn(scope) {
  if (!me || !scope) return '';
  if (me.scopedRoles) {
    if (me.scopedRoles.operator) return 'operator';
    const roles = (scope.kind === 'workspace' ? me.scopedRoles.workspaces : me.scopedRoles.organizations) || {};
    return roles[scope.id] || '';
  }
  return reachable(scope) ? me.role : '';
}
const canEdit = () => ['operator', 'admin'].includes(roleIn(current));
const base = () => (current.kind === 'organization' ? '/v1/organizations/' : '/v1/workspaces/') + encodeURIComponent(current.id);
const poolPath = (p) => `${base()}/providers/${p}/keys`;
const keyPath = (p, k) => `${poolPath(p)}/${encodeURIComponent(k)}`;
const keyName = (k) => `'${k.name || k.keyId}'`;

function when(iso) { return new Date(iso).toISOString().replace('T', ' ').slice(0, 16) + ' UTC'; }

// actorLabel names an actor in words: a person by their name and email
// (or issuer and subject), "via" the platform acting for them; a token by
// its description when it has one, else its id; "operator" and the like
// as they are.
function actorLabel(subject, name) {
  const person = /^(?:platform:([^/]+)\/)?person:(.+?)(?: \(([^()]*)\))?$/.exec(subject || '');
  if (person) return (person[3] || person[2]) + (person[1] ? ` via platform ${person[1]}` : '');
  const id = (subject || '').replace(/^token:/, '');
  if (name) return `${name} (${id})`;
  return subject && subject.startsWith('token:') ? `token ${id}` : (subject || 'someone');
}

// ---- Toasts and confirmations -------------------------------------------

// toast says what an action did. It stays until dismissed or replaced by
// the next one (no time limit to read it).
function toast(message, bad = false) {
  $('toast-text').textContent = message;
  $('toast').classList.toggle('bad', bad);
  $('toast').hidden = false;
}
$('toast-close').addEventListener('click', () => { $('toast').hidden = true; });

// confirmAction asks before a change to what resolves (or that cannot be
// undone). It resolves true when the person confirms; Escape or Cancel
// resolve false. extra is an optional element shown in the dialog.
function confirmAction({ title, text, ok, danger = false, extra = null }) {
  const dialog = $('confirm');
  const back = document.activeElement;
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-extra').replaceChildren(...(extra ? [extra] : []));
  const okBtn = $('confirm-ok');
  okBtn.textContent = ok;
  okBtn.className = danger ? 'danger' : '';
  return new Promise((resolve) => {
    const done = (answer) => {
      okBtn.removeEventListener('click', onOK);
      $('confirm-cancel').removeEventListener('click', onCancel);
      dialog.removeEventListener('cancel', onEscape);
      if (dialog.open) dialog.close();
      if (back && back.isConnected) back.focus();
      resolve(answer);
    };
    const onOK = (ev) => { ev.preventDefault(); done(true); };
    const onCancel = (ev) => { ev.preventDefault(); done(false); };
    const onEscape = (ev) => { ev.preventDefault(); done(false); };
    okBtn.addEventListener('click', onOK);
    $('confirm-cancel').addEventListener('click', onCancel);
    dialog.addEventListener('cancel', onEscape);
    dialog.showModal();
    $('confirm-cancel').focus();
  });
}

// ---- Signing in and navigation -------------------------------------------

async function signIn(token) {
  store.setItem('keybroker.token', token);
  try {
    me = await api('GET', '/v1/whoami');
  } catch (e) {
    store.removeItem('keybroker.token');
    throw e;
  }
  if (me.role === 'resolver') {
    store.removeItem('keybroker.token');
    me = null;
    throw new Error('This is a resolver token: it resolves keys for the execution path and cannot manage them. Sign in with an operator, admin or reader token.');
  }
  await enter();
}

// signInBySession signs in as the person whose session cookie the browser
// holds (set when they signed in with their identity provider); a 401
// means there is none, or it has ended.
async function signInBySession() {
  me = await api('GET', '/v1/whoami');
  bySession = true;
  await enter();
}

// whoText says who is signed in: a person by name (or email) and their
// roles scope by scope; a token by its description and id, its role and
// scopes.
function whoText() {
  if (me.person) {
    const p = me.person;
    const name = p.name && p.email ? `${p.name} (${p.email})` : (p.name || p.email || p.subject);
    const r = me.scopedRoles || {};
    // Where a role came from (the role mapping's rule and what it
    // matched), when keybroker knows.
    const from = (key) => (r.from && r.from[key] ? ` (${r.from[key].replace(/^rules\[\d+\]: /, '')})` : '');
    const roles = r.operator ? ['operator' + from('operator')] : [
      ...Object.entries(r.workspaces || {}).sort().map(([id, role]) => `${role} of workspace ${id}${from('workspace:' + id)}`),
      ...Object.entries(r.organizations || {}).sort().map(([id, role]) => `${role} of organization ${id}${from('organization:' + id)}`)];
    return `Signed in as ${name}${p.platform ? ' via ' + p.platform : ''}` + (roles.length ? `: ${roles.join(', ')}` : '');
  }
  const scopes = [...me.workspaces.map((w) => 'workspace ' + w), ...me.organizations.map((o) => 'organization ' + o)];
  return `Signed in as ${me.description ? me.description + ' (' + me.tokenId + ')' : me.tokenId}, role ${me.role}` +
    (scopes.length ? `, ${scopes.join(', ')}` : '');
}

// enter shows the page to whoever signed in (me).
async function enter() {
  providers = (await api('GET', '/v1/providers')).providers;
  $('who').textContent = whoText();
  $('who').hidden = false;
  $('signout').hidden = false;
  $('signin-section').hidden = true;
  $('views').hidden = false;
  $('nav-tokens').hidden = me.role !== 'operator';
  $('open-workspace').hidden = me.role !== 'operator';
  $('open-organization').hidden = me.role !== 'operator';
  await renderScopes('');
  // The URL names the view (#/workspace/ws1, #/tokens), so a link or a
  // reload lands there; else the last scope of this tab, or the only one.
  if (!location.hash || location.hash === '#/') {
    const last = JSON.parse(store.getItem('keybroker.scope') || 'null');
    if (last && reachable(last)) history.replaceState(null, '', `#/${last.kind}/${last.id}`);
    else if (me.workspaces.length + me.organizations.length === 1) {
      const only = me.workspaces.length ? `workspace/${me.workspaces[0]}` : `organization/${me.organizations[0]}`;
      history.replaceState(null, '', `#/${only}`);
    }
  }
  await route();
}

// showSignIn shows the sign-in view: the identity provider's sign-in
// first when keybroker offers it (GET /auth/config), then the token form.
function showSignIn(message = '') {
  const people = Boolean(signInConfig && signInConfig.oidc);
  $('signin-people').hidden = !people;
  $('signin-token-title').hidden = !people;
  if (people) updateLoginLink();
  $('signin-ended').textContent = message;
  $('signin-section').hidden = false;
}

// updateLoginLink makes the provider's sign-in come back to the view the
// URL names now.
function updateLoginLink() {
  const back = location.pathname.startsWith('/ui/') ? location.pathname + location.hash : '/ui/';
  $('signin-idp').href = (signInConfig.loginUrl || '/auth/login') + '?return=' + encodeURIComponent(back);
}

// sessionEnded leaves the page when keybroker no longer knows the
// session (signed out elsewhere, idle or too old, or its roles changed).
function sessionEnded() {
  me = null;
  bySession = false;
  current = null;
  ++openSeq;
  for (const id of ['views', 'who', 'signout', 'workspaces-section', 'tokens-section', 'workspace-section']) $(id).hidden = true;
  dropCreatedToken();
  showSignIn('Your session has ended or expired. Sign in again.');
}

const reachable = (s) => me.role === 'operator' || (s.kind === 'workspace' ? me.workspaces : me.organizations).includes(s.id);
const idRule = /^[a-z0-9][a-z0-9_-]{0,62}$/;

// openSeq counts the views shown: an opening that another view (or an
// invalid id) has overtaken says nothing (its renders fail once the scope
// is gone, and that is no error of the view now shown).
let openSeq = 0;

// route shows the view the URL names.
async function route() {
  if (!me) return;
  const m = location.hash.match(/^#\/(workspace|organization)\/(.+)$/);
  const tokens = location.hash === '#/tokens' && me.role === 'operator';
  $('tokens-section').hidden = !tokens;
  $('workspaces-section').hidden = tokens;
  for (const [link, on] of [['nav-tokens', tokens], ['nav-scopes', !tokens]]) {
    if (on) $(link).setAttribute('aria-current', 'page');
    else $(link).removeAttribute('aria-current');
  }
  dropCreatedToken();
  if (tokens) {
    ++openSeq;
    $('workspace-section').hidden = true;
    current = null;
    await renderTokens().catch((e) => { $('token-error').textContent = e.message; });
    return;
  }
  const seq = ++openSeq;
  if (m) await openScope({ kind: m[1], id: decodeURIComponent(m[2]) }).catch((e) => { if (seq === openSeq) showOpenError(e); });
  else {
    $('workspace-section').hidden = true;
    current = null;
  }
}
window.addEventListener('hashchange', () => {
  if (signInConfig && signInConfig.oidc && !me) updateLoginLink();
  route();
});

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
      onclick: () => { location.hash = `#/${sc.kind}/${sc.id}`; } }, label));
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

// signOut forgets the token, or ends the person's session at keybroker
// (POST /auth/logout), and goes back to the sign-in view.
async function signOut() {
  if (bySession) {
    try {
      await api('POST', (signInConfig && signInConfig.logoutUrl) || '/auth/logout');
    } catch (e) {
      if (e.status !== 401) { // 401: the session had ended already
        toast('Could not sign out: ' + e.message, true);
        return;
      }
    }
  }
  store.clear();
  location.hash = '';
  location.reload();
}

async function openScope(scope) {
  $('open-error').textContent = '';
  if (!idRule.test(scope.id)) {
    throw new Error(`"${scope.id}" is not a ${scope.kind} id: lower-case letters, digits, "-" and "_", starting with a letter or digit`);
  }
  if (!reachable(scope)) throw new Error(me.person ? `You have no role in ${scope.kind} ${scope.id}.` : `This token does not reach ${scope.kind} ${scope.id}.`);
  current = scope;
  store.setItem('keybroker.scope', JSON.stringify(scope));
  if (location.hash !== `#/${scope.kind}/${scope.id}`) history.replaceState(null, '', `#/${scope.kind}/${scope.id}`);
  const ws = scope.kind === 'workspace';
  $('workspace-title').textContent = (ws ? 'Workspace ' : 'Organization ') + scope.id;
  $('scope-hint').textContent = ws
    ? "Keys are stored in Vault; this page never shows one. Calls made with the workspace's own keys, or its organization's, are not billed by the platform."
    : "Keys are stored in Vault; this page never shows one. The organization's workspaces use these keys when they have no usable key of their own (and inherit), without being billed by the platform.";
  if (roleIn(scope) === 'reader') {
    $('scope-hint').textContent += ` You are a reader of this ${scope.kind}: you see its keys' metadata and cannot change them.`;
  }
  $('workspace-section').hidden = false;
  $('history-section').hidden = true;
  $('settings-section').hidden = !ws;
  $('linked-section').hidden = ws;
  auditFilters = { action: '', outcome: '', actor: '' };
  $('audit-filters').reset();
  openAdds.clear();
  // Busy until every part of the scope is shown: assistive technologies
  // (and the browser tests) wait for it before reading or acting.
  const section = $('workspace-section');
  section.setAttribute('aria-busy', 'true');
  try {
    if (ws) await renderSettings();
    else await renderLinked();
    await renderKeys();
    await renderCalls();
    await renderAudit();
  } finally {
    section.removeAttribute('aria-busy');
  }
}

// refresh re-reads what a change may have altered.
async function refresh() {
  if (current.kind === 'workspace') await renderSettings();
  await renderKeys();
  await renderAudit();
}

// ---- Settings ---------------------------------------------------------------

// settings of the open workspace: its organization, whether it inherits
// the organization's keys, and whether a call without a usable key falls
// back to the platform's hosted keys (billed) or fails.
let settings = { hostedFallback: true, inherit: true, organization: null };

async function renderSettings() {
  settings = await api('GET', `${base()}/settings`);
  const org = settings.organization;
  $('org-text').textContent = org
    ? `The workspace belongs to the organization ${org}.`
    : 'The workspace belongs to no organization (an operator links workspaces to organizations).';
  $('inherit-text').textContent = !org ? ''
    : settings.inherit ? `Inherit is on: providers without a usable workspace key use ${org}'s keys. Those calls are billed to ${org}'s own provider accounts, not by the platform.`
      : `Inherit is off: the workspace does not use ${org}'s keys; providers without a usable workspace key go straight to the hosted fallback.`;
  $('fallback-text').textContent = settings.hostedFallback
    ? "Hosted fallback is on: calls for a provider without a usable key of the workspace (or inherited) use the platform's hosted key, billed at hosted rates."
    : 'Hosted fallback is off: calls for a provider without a usable key of the workspace (or inherited) fail, so nothing is billed at hosted rates.';
  const toggle = $('fallback-toggle');
  toggle.hidden = !canEdit();
  toggle.textContent = settings.hostedFallback ? 'Turn the hosted fallback off (fail closed)' : 'Turn the hosted fallback on (billed)';
  const inherit = $('inherit-toggle');
  inherit.hidden = !canEdit() || !org;
  inherit.textContent = settings.inherit ? `Stop using ${org}'s keys` : `Use ${org}'s keys`;
}

async function changeSettings(change, question) {
  $('settings-error').textContent = '';
  if (!await confirmAction(question)) return;
  try {
    await api('PUT', `${base()}/settings`, change);
    await refresh();
    toast('Settings saved. ' + $(change.hostedFallback !== undefined ? 'fallback-text' : 'inherit-text').textContent);
  } catch (e) {
    $('settings-error').textContent = e.message;
  }
}
$('fallback-toggle').addEventListener('click', () => changeSettings({ hostedFallback: !settings.hostedFallback }, settings.hostedFallback
  ? { title: 'Turn the hosted fallback off?', ok: 'Turn it off', danger: true,
    text: "Calls for a provider without a usable key of the workspace (or inherited) will fail instead of using the platform's hosted key. Nothing more is billed at hosted rates." }
  : { title: 'Turn the hosted fallback on?', ok: 'Turn it on',
    text: "Calls for a provider without a usable key of the workspace (or inherited) will use the platform's hosted key, billed at hosted rates." }));
$('inherit-toggle').addEventListener('click', () => changeSettings({ inherit: !settings.inherit }, settings.inherit
  ? { title: `Stop using ${settings.organization}'s keys?`, ok: 'Stop using them', danger: true,
    text: `Providers without a usable workspace key will no longer use ${settings.organization}'s keys: they go to the hosted fallback (${settings.hostedFallback ? 'billed at hosted rates' : 'off, so those calls fail'}).` }
  : { title: `Use ${settings.organization}'s keys?`, ok: 'Use them',
    text: `Providers without a usable workspace key will use ${settings.organization}'s keys, billed to ${settings.organization}'s provider accounts rather than at hosted rates.` }));

async function renderLinked() {
  const list = $('linked');
  list.replaceChildren();
  try {
    const linked = (await api('GET', `${base()}/workspaces`)).workspaces;
    for (const w of linked) {
      const words = w.inherit ? 'uses these keys when it has no usable key of its own' : 'linked, but does not use these keys (inherit is off)';
      const item = el('li', { 'data-linked': w.workspace });
      if (reachable({ kind: 'workspace', id: w.workspace })) item.append(el('a', { href: `#/workspace/${w.workspace}`, text: w.workspace }));
      else item.append(w.workspace);
      item.append(`: ${words}`);
      list.append(item);
    }
    if (!linked.length) list.append(el('li', { text: 'No workspace is linked to this organization (an operator links them).' }));
  } catch (e) {
    list.append(el('li', { class: 'error', text: e.message }));
  }
}

// ---- Pools ------------------------------------------------------------------

// servedBy says in plain words what serves a workspace's calls for a
// provider (from GET .../effective).
function servedBy(e) {
  if (!e) return '';
  const n = e.usableKeys === 1 ? '1 usable key' : `${e.usableKeys} usable keys`;
  const first = (e.first || []).map((k) => `'${k.name || k.keyId}'`);
  const which = first.length === 1 ? `key ${first[0]}` : first.length ? `keys ${first.join(' and ')} (taking turns)` : 'keys';
  switch (e.scope) {
    case 'workspace': return `Calls use the workspace's own ${which} (${n}; BYOK, not billed by the platform)`;
    case 'organization': return `Calls use organization ${e.scopeId}'s ${which} (${n}; BYOK, not billed by the platform)`;
    case 'hosted': return "Using hosted key: calls are billed at the platform's hosted rates";
  }
  if (e.reason === 'hosted_fallback_off') return 'No key: calls fail (hosted fallback is off)';
  if (e.reason === 'hosted_keys_unavailable') return "No key: calls fail (the platform's hosted keys are disabled)";
  if ((e.reason || '').endsWith('_keys_cooling_down')) return 'No key now: every key that could serve is cooling down (calls get 429 with Retry-After)';
  return 'No key: calls fail (the platform has no hosted key for this provider)';
}

let pools = {}; // provider id → its keys, as last shown
const openAdds = new Set(); // providers whose add form is unfolded

async function renderKeys() {
  const all = await Promise.all(providers.map((p) => api('GET', poolPath(p.id)).then((r) => r.keys)));
  let effective = {};
  if (current.kind === 'workspace') {
    effective = Object.fromEntries((await api('GET', `${base()}/effective`)).providers.map((e) => [e.provider, e]));
  }
  const tbody = $('keys');
  tbody.replaceChildren();
  pools = {};
  providers.forEach((p, i) => {
    const pool = all[i];
    pools[p.id] = pool;
    const status = current.kind === 'workspace' ? servedBy(effective[p.id])
      : pool.length ? `${pool.filter((k) => k.state === 'active').length} of ${pool.length} keys active` : 'No key';
    const list = el('ul', { class: 'pool', 'data-pool': p.id, 'aria-label': `${p.displayName} keys, in the order they serve` });
    pool.forEach((k, j) => list.append(keyItem(p, k, pool, j)));
    const keysCell = el('td', {}, list);
    if (canEdit()) {
      // The add form folds away (eleven providers' forms would bury the
      // keys); it stays open across re-renders once opened.
      const fold = el('details', { 'data-add': p.id, open: openAdds.has(p.id) },
        el('summary', { text: pool.length ? `Add a key (${pool.length} of 10)` : 'Add a key' }), addForm(p, pool));
      fold.addEventListener('toggle', () => { if (fold.open) openAdds.add(p.id); else openAdds.delete(p.id); });
      keysCell.append(fold);
    }
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
  const item = el('li', { 'data-key': id, class: k.state === 'disabled' ? 'disabled' : undefined });
  if (canEdit()) item.append(dragHandle(p, k, pool, j, item), ' ');
  item.append(
    el('strong', { 'data-name': id, text: k.name || k.keyId }), ' ',
    el('span', { class: 'masked', 'data-masked': id, text: k.maskedKey }), ' ',
    el('span', { class: 'badge ' + (k.health || 'healthy'), 'data-health': id, text: healthInWords(k) }),
    credentialSummary(p, k, id),
    el('div', { text: `key id ${k.keyId}, priority ${k.priority}, ` }, el('span', { class: 'state-' + k.state, text: k.state }),
      k.models.length ? `, only for ${k.models.join(', ')}` : ''),
    el('div', { 'data-changed': id, text: `version ${k.version}, changed by ${actorLabel(k.updatedBy, k.updatedByName)} at ${when(k.updatedAt)}` }),
    el('div', { 'data-usage': id, text: usage }));
  if (canEdit()) item.append(keyControls(p, k, pool, j));
  return item;
}

// credentialSummary shows a key of several fields: each public field's
// value (a map as its pairs) and each secret field's masked preview, in
// the schema's order. An api_key key has only its masked key.
function credentialSummary(p, k, id) {
  if (!k.kind || k.kind === 'api_key') return '';
  const list = el('dl', { class: 'credential-fields', 'data-credential-of': id });
  for (const f of p.fields) {
    if (f.secret && k.masked && k.masked[f.name]) {
      list.append(el('dt', { text: fieldLabel(f) }),
        el('dd', {}, el('span', { class: 'masked', 'data-mask': `${id}/${f.name}`, text: k.masked[f.name] }), el('span', { class: 'hint', text: ' (secret)' })));
    } else if (!f.secret && k.fields && k.fields[f.name] !== undefined) {
      const v = k.fields[f.name];
      const text = typeof v === 'object' ? Object.entries(v).map(([a, b]) => `${a} → ${b}`).join(', ') : String(v);
      list.append(el('dt', { text: fieldLabel(f) }), el('dd', { 'data-field': `${id}/${f.name}`, text }));
    }
  }
  return list;
}

// healthInWords is a key's health badge: healthy, cooling down until ...,
// failing: refused by the provider at ....
function healthInWords(k) {
  if (k.health === 'cooling_down') return `cooling down until ${k.cooldownUntil ? when(k.cooldownUntil) : 'soon'}`;
  if (k.health === 'failing') return `failing: refused by the provider${k.healthChangedAt ? ' at ' + when(k.healthChangedAt) : ''}` +
    (k.healthReason ? ` (${k.healthReason})` : '');
  return 'healthy';
}

// nextSource says what serves a pool's calls once keys stop serving.
function nextSource(p, pool, without) {
  const others = pool.filter((o) => !without.includes(o.keyId) && o.state === 'active');
  if (others.length) {
    const first = others.reduce((a, b) => (b.priority < a.priority ? b : a));
    return `The pool's other active key ${keyName(first)} serves instead` + (others.length > 1 ? ` (${others.length} keys remain active).` : '.');
  }
  if (current.kind === 'organization') return "The organization's workspaces will then use the next source their settings allow.";
  if (settings.organization && settings.inherit) return `Calls will then use ${settings.organization}'s keys, if it has a usable one, else ` +
    (settings.hostedFallback ? "the platform's hosted key (billed at hosted rates)." : 'fail (the hosted fallback is off).');
  return settings.hostedFallback ? "Calls will then use the platform's hosted key (billed at hosted rates)." : 'Calls will then fail: the hosted fallback is off.';
}

// An action on a key: run it, re-read the page, say what happened (a
// toast) or what went wrong (next to the key, or next to the field the
// error names when atField places it there, and in the toast).
function keyAction(errBox, fn, done, atField) {
  return async () => {
    errBox.textContent = '';
    try {
      const result = await fn();
      if (result === false) return; // not confirmed
      await refresh();
      if (done) toast(typeof done === 'function' ? done(result) : done);
    } catch (e) {
      if (!(atField && atField(e.message))) {
        const box = errBox.isConnected ? errBox : document.getElementById(errBox.id) || errBox;
        box.textContent = e.message;
      }
      toast(e.message, true);
    }
  };
}

// reorderPatches moves key `from` of a pool (sorted as served) to index
// `to`, changing as few priorities as it can: the moved key takes a
// priority between its new neighbours, and when there is no room the
// keys after it are pushed down by one.
function reorderPatches(pool, from, to) {
  const order = pool.slice();
  const [moved] = order.splice(from, 1);
  order.splice(to, 0, moved);
  const lo = to > 0 ? order[to - 1].priority : -1;
  const hi = to < order.length - 1 ? order[to + 1].priority : 1001;
  if (hi - lo >= 2) {
    const p = to === 0 ? hi - 1 : to === order.length - 1 ? lo + 1 : Math.floor((lo + hi) / 2);
    return p === moved.priority ? [] : [[moved, p]];
  }
  const patches = [];
  let prev = -1;
  for (const k of order) {
    const want = k === moved ? prev + 1 : Math.max(k.priority, prev + 1);
    if (want > 1000) throw new Error('No room to reorder: priorities end at 1000; lower some keys\' priorities first');
    if (want !== k.priority) patches.push([k, want]);
    prev = want;
  }
  return patches;
}

async function reorder(p, pool, from, to) {
  if (from === to) return false;
  const moved = pool[from];
  const patches = reorderPatches(pool, from, to);
  if (!patches.length) return false;
  const neighbour = pool[to]; // the key moved past, last
  const where = to < from ? `before ${keyName(neighbour)}` : `after ${keyName(neighbour)}`;
  const changes = patches.map(([k, pr]) => `${keyName(k)} gets priority ${pr}`).join(', ');
  const ok = await confirmAction({ title: `Serve ${keyName(moved)} ${where}?`, ok: 'Change the order',
    text: `${p.displayName} calls will try ${keyName(moved)} ${where}: ${changes}.` });
  if (!ok) return false;
  for (const [k, pr] of patches) await api('PATCH', keyPath(p.id, k.keyId), { priority: pr });
  return `${keyName(moved)} now serves ${where}.`;
}

// dragHandle reorders a key by pointer (drag it over the others) or by
// keyboard (arrow keys while the handle has focus).
function dragHandle(p, k, pool, j, item) {
  const handle = el('button', { type: 'button', class: 'handle', 'data-handle': `${p.id}/${k.keyId}`,
    'aria-label': `Move ${keyName(k)} (position ${j + 1} of ${pool.length}): press the up or down arrow key, or drag` }, '⋮⋮');
  const err = () => document.getElementById(`err-${p.id}-${k.keyId}`) || el('p');
  const run = (to) => keyAction(err(), () => reorder(p, pool, j, to), (msg) => msg)().then(() => {
    document.querySelector(`[data-handle="${CSS.escape(p.id + '/' + k.keyId)}"]`)?.focus();
  });
  handle.addEventListener('keydown', (ev) => {
    if (ev.key === 'ArrowUp' && j > 0) { ev.preventDefault(); run(j - 1); }
    if (ev.key === 'ArrowDown' && j < pool.length - 1) { ev.preventDefault(); run(j + 1); }
  });
  let target = -1;
  const clearMarks = () => item.parentElement?.querySelectorAll('li').forEach((li) => li.classList.remove('drop-before', 'drop-after', 'dragging'));
  handle.addEventListener('pointerdown', (ev) => {
    if (ev.button !== 0) return;
    handle.setPointerCapture(ev.pointerId);
    item.classList.add('dragging');
    target = j;
  });
  handle.addEventListener('pointermove', (ev) => {
    if (target < 0) return;
    // The new place is after every other key whose middle is above the
    // pointer.
    const others = [...item.parentElement.children].filter((li) => li !== item);
    target = others.filter((li) => { const r = li.getBoundingClientRect(); return ev.clientY > r.top + r.height / 2; }).length;
    others.forEach((li) => li.classList.remove('drop-before', 'drop-after'));
    if (target < j) others[target].classList.add('drop-before');
    if (target > j) others[target - 1].classList.add('drop-after');
  });
  const end = () => {
    const to = target;
    target = -1;
    clearMarks();
    if (to >= 0 && to !== j) run(to);
  };
  handle.addEventListener('pointerup', end);
  handle.addEventListener('pointercancel', () => { target = -1; clearMarks(); });
  return handle;
}

function keyControls(p, k, pool, j) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const box = el('div', { class: 'edit' });
  const err = el('p', { class: 'error', id: 'err-' + slug, role: 'alert' });
  // Rotate: a new value for this key (a whole new credential, for the
  // kinds of several fields: the public fields filled in, every secret
  // field of the chosen way asked again).
  const confirmRotate = () => confirmAction({ title: `Replace ${p.displayName} key ${keyName(k)}?`, ok: 'Replace the key',
    text: (k.state === 'active' ? `Calls this key serves use the new value at once. ` : 'The key is disabled: the new value serves once it is enabled. ') +
      `The current value stays in Vault as version ${k.version}, so it can be rolled back.` });
  const rotated = (r) => `Replaced ${p.displayName} key ${keyName(k)}: now version ${r.version} (${r.maskedKey}).`;
  let rotate;
  if (p.kind === 'api_key') {
    const input = el('input', { id: 'rotate-' + slug, type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'err-' + slug });
    rotate = el('form', { 'data-rotate': id, method: 'post' },
      el('label', { for: 'rotate-' + slug, text: `Replace the key ${k.name || k.keyId}` }), input,
      el('button', { type: 'submit', text: 'Replace key' }));
    rotate.addEventListener('submit', (ev) => {
      ev.preventDefault();
      keyAction(err, async () => {
        if (!await confirmRotate()) return false;
        const value = input.value;
        input.value = '';           // the key leaves the DOM before the request returns
        return api('PUT', keyPath(p.id, k.keyId), { apiKey: value });
      }, rotated)();
    });
  } else {
    const cred = credentialForm(p, 'rotate-' + slug, k);
    const form = el('form', { 'data-rotate': id, method: 'post' },
      el('p', { class: 'hint', text: 'A replacement writes the whole credential: the public fields are filled in from the current one; ' +
        'keybroker never shows a secret field, so each one the chosen way needs is asked again (type the same value to keep it).' }),
      cred.node, el('button', { type: 'submit', text: 'Replace credential' }));
    rotate = el('details', { 'data-replace': id }, el('summary', { text: `Replace the credential of ${k.name || k.keyId}` }), form);
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      cred.clearErrors();
      keyAction(err, async () => {
        const credential = cred.read();
        if (!await confirmRotate()) return false;
        cred.clearSecrets(); // the secrets leave the DOM before the request returns
        return api('PUT', keyPath(p.id, k.keyId), { credential });
      }, rotated, (message) => cred.showError(message))();
    });
  }
  // Rename (changes no resolve: no confirmation).
  const nameInput = el('input', { id: 'name-' + slug, autocomplete: 'off', value: k.name, maxlength: '120' });
  const rename = el('form', { 'data-rename': id, method: 'post' },
    el('label', { for: 'name-' + slug, text: 'Name' }), nameInput, el('button', { type: 'submit', text: 'Rename' }));
  rename.addEventListener('submit', (ev) => {
    ev.preventDefault();
    keyAction(err, () => api('PATCH', keyPath(p.id, k.keyId), { name: nameInput.value }), `Renamed to '${nameInput.value}'.`)();
  });
  // Reorder by one step, for those who prefer buttons to the handle.
  const up = el('button', { type: 'button', 'data-up': id, text: 'Serve earlier', 'aria-label': `Serve earlier: ${k.name || k.keyId}`, disabled: j === 0 });
  const down = el('button', { type: 'button', 'data-down': id, text: 'Serve later', 'aria-label': `Serve later: ${k.name || k.keyId}`, disabled: j === pool.length - 1 });
  up.addEventListener('click', keyAction(err, () => reorder(p, pool, j, j - 1), (m) => m));
  down.addEventListener('click', keyAction(err, () => reorder(p, pool, j, j + 1), (m) => m));
  const enabling = k.state !== 'active';
  const toggle = el('button', { type: 'button', 'data-toggle-state': id, text: enabling ? 'Enable' : 'Disable',
    onclick: keyAction(err, async () => {
      const q = enabling
        ? { title: `Enable ${keyName(k)}?`, ok: 'Enable', text: `${keyName(k)} serves ${p.displayName} calls again, at priority ${k.priority}.` }
        : { title: `Disable ${keyName(k)}?`, ok: 'Disable', danger: true, text: `${keyName(k)} stops serving at once. ${nextSource(p, pool, [k.keyId])}` };
      if (!await confirmAction(q)) return false;
      return api('PATCH', keyPath(p.id, k.keyId), { state: enabling ? 'active' : 'disabled' });
    }, `${enabling ? 'Enabled' : 'Disabled'} ${p.displayName} key ${keyName(k)}.`) });
  // Delete, with a confirmation that says what it leaves behind.
  const delBtn = el('button', { type: 'button', 'data-delete': id, text: 'Delete key', class: 'danger',
    onclick: keyAction(err, async () => {
      const destroy = el('input', { type: 'checkbox', id: `destroy-${slug}`, 'data-destroy': id });
      const destroyLabel = el('label', { for: `destroy-${slug}` }, destroy, ' Also destroy every earlier version in Vault, for good');
      const ok = await confirmAction({ title: `Delete ${p.displayName} key ${keyName(k)}?`, ok: 'Delete the key', danger: true, extra: destroyLabel,
        text: `${k.state === 'active' ? nextSource(p, pool, [k.keyId]) : 'The key is disabled: nothing serves differently.'} ` +
          'A plain delete removes the current version only: the older versions stay in Vault, readable and restorable by its operators. Destroy removes them all.' });
      if (!ok) return false;
      await api('DELETE', keyPath(p.id, k.keyId) + (destroy.checked ? '?destroy=true' : ''));
      return destroy.checked;
    }, (destroyed) => `Deleted ${p.displayName} key ${keyName(k)}${destroyed ? ', every version destroyed' : '; its older versions stay in Vault'}.`) });
  const histBtn = el('button', { type: 'button', 'data-history': id, text: 'Version history',
    onclick: () => renderHistory(p, k).catch((e) => { err.textContent = e.message; }) });
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
      toast(verdict.textContent, r.result !== 'accepted');
    } catch (e) {
      verdict.textContent = '';
      err.textContent = e.message;
    }
  });
  box.append(rotate, rename, up, down, toggle, testBtn, delBtn, histBtn, verdict, err);
  return box;
}

// addForm adds a key to a provider's pool. Adding asks first when the
// new key would change what serves (it would serve first, or share the
// first place).
function addForm(p, pool) {
  const name = el('input', { id: 'newname-' + p.id, autocomplete: 'off', maxlength: '120' });
  const priority = el('input', { id: 'priority-' + p.id, type: 'number', min: '0', max: '1000', value: '100' });
  const err = el('p', { class: 'error', id: 'err-' + p.id, role: 'alert' });
  const settings = [el('label', { for: 'newname-' + p.id, text: 'Name (optional)' }), name,
    el('label', { for: 'priority-' + p.id, text: 'Priority (lower serves first)' }), priority,
    el('button', { type: 'submit', text: 'Add key' }), err];
  // An api_key provider takes one password field, as it always has; the
  // other kinds a form built from their schema (credentialForm).
  let input = null, cred = null;
  const form = el('form', { 'data-form': p.id, method: 'post' });
  if (p.kind === 'api_key') {
    input = el('input', { id: 'key-' + p.id, type: 'password', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': 'err-' + p.id + ' hint-' + p.id });
    form.append(el('label', { for: 'key-' + p.id, text: `New ${p.displayName} key` }), input,
      el('span', { class: 'hint', id: 'hint-' + p.id, text: ' ' + p.formatHint + ' ' }), ...settings);
  } else {
    cred = credentialForm(p, 'add-' + p.id, null);
    form.append(cred.node, ...settings);
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const pr = Number(priority.value);
    const label = name.value ? `'${name.value}'` : 'the new key';
    if (cred) cred.clearErrors();
    keyAction(err, async () => {
      const credential = cred ? cred.read() : null; // a field's own error before anything is asked
      if (!await confirmAdd(p, pool, pr, label)) return false;
      const body = { priority: pr };
      if (cred) {
        body.credential = credential;
        cred.clearSecrets(); // the secrets leave the DOM before the request returns
      } else {
        body.apiKey = input.value;
        input.value = '';           // the key leaves the DOM before the request returns
      }
      if (name.value) body.name = name.value;
      if (!pool.length) body.keyId = 'default'; // the v1 routes' key
      return api('POST', poolPath(p.id), body);
    }, (r) => `Added ${p.displayName} key '${r.name || r.keyId}' (${r.maskedKey}) at priority ${r.priority}.`,
    cred ? (message) => cred.showError(message) : undefined)();
  });
  return form;
}

// confirmAdd asks before a new key changes what serves (it would serve
// first, or share the first place); true when it changes nothing or the
// person confirms.
async function confirmAdd(p, pool, pr, label) {
  const active = pool.filter((k) => k.state === 'active');
  const best = active.length ? Math.min(...active.map((k) => k.priority)) : Infinity;
  if (pr > best) return true;
  const first = active.find((k) => k.priority === best);
  const text = !active.length ? `${p.displayName} calls will use ${label} from now on` +
      (current.kind === 'workspace' ? " (the workspace's own key: BYOK, not billed by the platform)." : " (for the organization's inheriting workspaces).")
    : pr < best ? `${label} will serve ${p.displayName} calls before ${keyName(first)}.`
      : `${label} will take turns with ${keyName(first)} (same priority ${pr}).`;
  return confirmAction({ title: `Add ${label} to the ${p.displayName} pool?`, ok: 'Add the key', text });
}

// ---- Credential forms ---------------------------------------------------------

// GET /v1/providers gives each provider's credential kind and fields (name,
// label, secret, required, map or string, a hint, whether it is a file
// picked from disk, a map's column words) and, for a kind with several ways
// of signing in, the ways (shown as a choice: only the chosen way's fields
// on screen). The form is built from that alone: a provider added to the
// catalogue needs nothing here.
const fieldLabel = (f) => f.label || f.name.replace(/([a-z0-9])([A-Z])/g, '$1 $2').replace(/^./, (c) => c.toUpperCase());

// fieldError is an error of the form's own checks, placed at its field.
function fieldError(field, message) {
  const e = new Error(message);
  e.field = field;
  return e;
}

// credentialForm is the fields of p's credential kind, their ids starting
// with prefix. A key's metadata (key) fills the public fields and picks
// the way its masks show; a secret field always starts empty and is never
// filled by the page. read() is the "credential" object of a write (it
// throws a field's error), clearSecrets() empties every secret field,
// showError(message) places an error that names exactly one field next to
// that field.
function credentialForm(p, prefix, key) {
  const controls = new Map();
  const schema = new Map(p.fields.map((f) => [f.name, f]));
  const spec = p.choices;
  const ways = spec ? spec.options.map((o) => ({ ...o, fields: p.fields.filter((f) => f.choice === o.id).map((f) => f.name) })) : [];
  const inWay = new Set(ways.flatMap((w) => w.fields));
  const node = el('div', { class: 'credential', 'data-credential': prefix });
  const add = (f, required, parent) => {
    const value = key && key.fields ? key.fields[f.name] : undefined;
    const c = f.type === 'map' ? mapControl(f, required, `${prefix}-${f.name}`, value)
      : f.file && f.secret ? fileControl(f, required, `${prefix}-${f.name}`)
        : textControl(f, required, `${prefix}-${f.name}`, value);
    controls.set(f.name, c);
    parent.append(c.node);
  };
  for (const f of p.fields) if (!inWay.has(f.name)) add(f, f.required, node);
  let chosen = null;
  if (ways.length) {
    const had = key && key.masked ? ways.find((w) => w.fields.some((n) => key.masked[n])) : null;
    chosen = had || ways[0];
    const group = el('fieldset', { class: 'ways', 'data-ways': prefix }, el('legend', { text: spec.label }));
    const boxes = [];
    for (const w of ways) {
      const radio = el('input', { type: 'radio', name: `${prefix}-way`, id: `${prefix}-way-${w.id}`, value: w.id, checked: w === chosen });
      group.append(el('label', { class: 'choice', for: `${prefix}-way-${w.id}` }, radio, ' ' + w.label));
      const box = el('div', { class: 'way', 'data-way': `${prefix}/${w.id}` });
      for (const n of w.fields) add(schema.get(n), w.required.includes(n) || schema.get(n).required, box);
      boxes.push([w, box]);
      radio.addEventListener('change', () => { if (radio.checked) choose(w); });
    }
    const choose = (w) => {
      chosen = w;
      for (const [way, box] of boxes) {
        box.hidden = way !== w;
        for (const n of way.fields) controls.get(n).setDisabled(way !== w);
      }
    };
    node.append(group, ...boxes.map(([, box]) => box));
    choose(chosen);
  }
  const live = () => p.fields.map((f) => f.name).filter((n) => !inWay.has(n) || chosen.fields.includes(n));
  return {
    node,
    read() {
      const out = {};
      for (const n of live()) {
        const v = controls.get(n).read();
        if (v !== undefined) out[n] = v;
      }
      return out;
    },
    clearSecrets() { for (const f of p.fields) if (f.secret) controls.get(f.name).clear(); },
    clearErrors() { for (const c of controls.values()) c.setError(''); },
    showError(message) {
      const named = live().filter((n) => new RegExp(`\\b${n}\\b`).test(message));
      if (named.length !== 1) return false;
      const c = controls.get(named[0]);
      c.setError(message);
      c.focus();
      return true;
    },
  };
}

// A field's label: its name in words and whether it must be given.
const fieldLegend = (f, required) => `${fieldLabel(f)} ${required ? '(required)' : '(optional)'}`;
const fieldHint = (f, id) => el('p', { class: 'hint', id: id + '-hint' }, el('code', { text: f.name }), f.hint ? ': ' + f.hint : '');
const fieldErr = (id) => el('p', { class: 'error', id: id + '-err' });

// textControl is a string field: a text input, or a password input that
// the page never fills for a secret one.
function textControl(f, required, id, value) {
  const input = el('input', { id, type: f.secret ? 'password' : 'text', autocomplete: 'off', spellcheck: 'false',
    required, 'data-field-input': f.name, 'aria-describedby': `${id}-hint ${id}-err` });
  if (!f.secret && typeof value === 'string') input.value = value;
  const err = fieldErr(id);
  return {
    node: el('div', { class: 'field' }, el('label', { for: id, text: fieldLegend(f, required) }), input, fieldHint(f, id), err),
    read: () => (input.value === '' ? undefined : input.value),
    clear: () => { input.value = ''; },
    setError: (text) => setFieldError(input, err, text),
    focus: () => input.focus(),
    setDisabled: (off) => { input.disabled = off; },
  };
}

function setFieldError(input, err, text) {
  err.textContent = text;
  if (text) input.setAttribute('aria-invalid', 'true');
  else input.removeAttribute('aria-invalid');
}

// mapControl is a map field (model → deployment): rows of two inputs, a
// row added or removed by a button.
function mapControl(f, required, id, value) {
  const [left, right] = f.mapLabels || ['Name', 'Value'];
  const what = fieldLabel(f);
  const rows = el('div', { class: 'map-rows', 'data-map': id });
  const err = fieldErr(id);
  let n = 0;
  const renumber = () => [...rows.children].forEach((row, i) => {
    const [k, v, rm] = row.querySelectorAll('label, button');
    k.textContent = `${left}, row ${i + 1}`;
    v.textContent = `${right}, row ${i + 1}`;
    rm.setAttribute('aria-label', `Remove row ${i + 1} of ${what}`);
  });
  const addRow = (k = '', v = '') => {
    const i = ++n;
    const kIn = el('input', { id: `${id}-k${i}`, autocomplete: 'off', spellcheck: 'false', 'data-map-key': '', 'aria-describedby': `${id}-hint ${id}-err` });
    const vIn = el('input', { id: `${id}-v${i}`, autocomplete: 'off', spellcheck: 'false', 'data-map-value': '', 'aria-describedby': `${id}-hint ${id}-err` });
    kIn.value = k;
    vIn.value = v;
    const row = el('div', { class: 'map-row' },
      el('label', { class: 'visually-hidden', for: kIn.id }), kIn, el('span', { 'aria-hidden': 'true', text: '→' }),
      el('label', { class: 'visually-hidden', for: vIn.id }), vIn,
      el('button', { type: 'button', 'data-remove-row': '', text: 'Remove' }));
    row.querySelector('button').addEventListener('click', () => {
      const next = row.nextElementSibling || row.previousElementSibling;
      row.remove();
      renumber();
      (next ? next.querySelector('input') : addBtn).focus();
    });
    rows.append(row);
    renumber();
    return kIn;
  };
  const addBtn = el('button', { type: 'button', 'data-add-row': id, text: `Add a row to ${what}` });
  addBtn.addEventListener('click', () => addRow().focus());
  const entries = value && typeof value === 'object' ? Object.entries(value) : [];
  if (entries.length) for (const [k, v] of entries) addRow(k, v);
  else addRow();
  const group = el('fieldset', { class: 'map', 'aria-describedby': `${id}-hint ${id}-err` },
    el('legend', { text: fieldLegend(f, required) }),
    el('p', { class: 'map-head', 'aria-hidden': 'true', text: `${left} → ${right}` }), rows, addBtn, fieldHint(f, id), err);
  const inputs = () => [...rows.querySelectorAll('input')];
  return {
    node: group,
    read() {
      const out = {};
      for (const row of rows.children) {
        const [k, v] = row.querySelectorAll('input');
        if (k.value === '' && v.value === '') continue;
        if (Object.hasOwn(out, k.value)) throw fieldError(f.name, `${f.name} names ${left.toLowerCase()} "${k.value}" twice`);
        out[k.value] = v.value;
      }
      if (!Object.keys(out).length) {
        if (required) throw fieldError(f.name, `${f.name} needs at least one row`);
        return undefined;
      }
      return out;
    },
    clear() {},
    setError(text) {
      err.textContent = text;
      for (const i of inputs()) { if (text) i.setAttribute('aria-invalid', 'true'); else i.removeAttribute('aria-invalid'); }
    },
    focus: () => (inputs()[0] || addBtn).focus(),
    setDisabled(off) { group.disabled = off; },
  };
}

// fileControl is a secret field that is a file (a service-account key
// file): picked from disk and read in the browser (FileReader), or pasted
// into a password field. The file's text is kept in this closure only,
// never in the page; the page shows only the account it names
// (client_email) to confirm the right file was picked.
function fileControl(f, required, id) {
  let fromFile = '';
  const file = el('input', { id: id + '-file', type: 'file', accept: '.json,application/json', 'data-file-input': f.name,
    'aria-describedby': `${id}-picked ${id}-hint ${id}-err` });
  const picked = el('p', { class: 'picked', id: id + '-picked', role: 'status' });
  const paste = el('input', { id, type: 'password', autocomplete: 'off', spellcheck: 'false', 'data-field-input': f.name,
    'aria-describedby': `${id}-hint ${id}-err` });
  const err = fieldErr(id);
  const forget = () => { fromFile = ''; file.value = ''; picked.textContent = ''; };
  file.addEventListener('change', () => {
    const chosen = file.files[0];
    fromFile = '';
    picked.textContent = '';
    setFieldError(file, err, '');
    if (!chosen) return;
    const reader = new FileReader();
    reader.addEventListener('load', () => {
      let doc = null;
      try { doc = JSON.parse(reader.result); } catch { doc = null; }
      if (!doc || doc.type !== 'service_account' || typeof doc.client_email !== 'string') {
        file.value = '';
        setFieldError(file, err, `${chosen.name} is not a service-account key file (JSON with "type": "service_account" and a client_email)`);
        return;
      }
      fromFile = reader.result;
      paste.value = '';
      picked.textContent = `Read ${chosen.name}: service account ${doc.client_email}.`;
    });
    reader.addEventListener('error', () => setFieldError(file, err, `${chosen.name} could not be read`));
    reader.readAsText(chosen);
  });
  paste.addEventListener('input', () => { if (paste.value) { fromFile = ''; file.value = ''; picked.textContent = ''; } });
  return {
    node: el('fieldset', { class: 'file', 'aria-describedby': `${id}-hint ${id}-err` },
      el('legend', { text: fieldLegend(f, required) }),
      el('label', { for: file.id, text: 'Choose the key file (JSON) from disk' }), file, picked,
      el('label', { for: id, text: "Or paste the file's JSON (hidden as you paste)" }), paste, fieldHint(f, id), err),
    read() {
      const v = fromFile || paste.value;
      if (!v && required) throw fieldError(f.name, `${f.name}: choose the key file or paste its JSON`);
      return v || undefined;
    },
    clear() { forget(); paste.value = ''; },
    setError(text) { setFieldError(paste, err, text); setFieldError(file, err, text); },
    focus: () => file.focus(),
    setDisabled(off) { file.disabled = off; paste.disabled = off; },
  };
}

// ---- History ----------------------------------------------------------------

async function renderHistory(p, k) {
  const versions = (await api('GET', `${keyPath(p.id, k.keyId)}/versions`)).versions;
  $('history-title').textContent = `${p.displayName} key ${keyName(k)} (key id ${k.keyId}): versions`;
  const list = $('history');
  list.replaceChildren();
  for (const v of versions) {
    const state = v.current ? 'current' : v.destroyed ? 'destroyed' : v.deletedAt ? 'deleted' : 'available';
    const by = v.createdBy ? `written by ${actorLabel(v.createdBy, v.createdByName)}` : 'written in Vault directly';
    const item = el('li', { 'data-version': String(v.version) },
      el('strong', { text: `Version ${v.version}` }), ` (${state}) `,
      v.maskedKey ? el('span', { class: 'masked', text: v.maskedKey }) : '', ` ${by}, `, el('span', { class: 'when', text: when(v.createdAt) }));
    if (!v.current && state === 'available' && canEdit()) {
      item.append(' ', el('button', { type: 'button', 'data-rollback': String(v.version), text: `Roll back to version ${v.version}`,
        onclick: async () => {
          const ok = await confirmAction({ title: `Roll ${keyName(k)} back to version ${v.version}?`, ok: 'Roll back',
            text: `Calls this key serves use version ${v.version}'s value${v.maskedKey ? ' (' + v.maskedKey + ')' : ''} at once. ` +
              `The current value (${k.maskedKey}) stays in Vault as version ${k.version}; the roll back is written as a new version.` });
          if (!ok) return;
          try {
            const r = await api('POST', `${keyPath(p.id, k.keyId)}/rollback`, { version: v.version });
            await refresh();
            k = pools[p.id].find((o) => o.keyId === k.keyId) || k;
            await renderHistory(p, k);
            toast(`Rolled ${keyName(k)} back to version ${v.version}'s value: now version ${r.version}.`);
          } catch (e) {
            toast(e.message, true);
          }
        } }));
    }
    list.append(item);
  }
  $('history-section').hidden = false;
  $('history-title').scrollIntoView({ block: 'nearest' });
}

// ---- Audit ------------------------------------------------------------------

let auditFilters = { action: '', outcome: '', actor: '' };
let auditCursor = '';

function auditQuery(limit, cursor) {
  const q = new URLSearchParams({ limit: String(limit) });
  for (const [k, v] of Object.entries(auditFilters)) if (v) q.set(k, v);
  if (cursor) q.set('cursor', cursor);
  return `${base()}/audit?${q}`;
}

const providerName = (id) => (providers.find((p) => p.id === id) || { displayName: id }).displayName;

// auditLine says an event in words: when, who, what, how it ended.
function auditLine(e) {
  const key = e.provider ? `${providerName(e.provider)} key ${e.keyId || 'default'}` : '';
  const v = e.version ? ` version ${e.version}` : '';
  const masked = e.maskedKey ? ` (${e.maskedKey})` : '';
  const detail = e.detail ? `: ${e.detail}` : '';
  const what = {
    'key.create': () => `added ${key}${masked},${v}`,
    'key.rotate': () => `replaced ${key}${masked}, now${v}`,
    'key.rollback': () => `rolled back ${key}${detail}${masked}`,
    'key.delete': () => `deleted ${key}${detail}`,
    'key.update': () => `changed ${key}${detail}`,
    'key.test': () => `tested ${key}${detail}`,
    'key.health': () => `reported on ${key}${detail}`,
    'key.migrate_layout': () => `moved ${key} to the pool layout${detail}`,
    'workspace.settings': () => `changed the settings${detail}`,
    'workspace.purge': () => `deleted every key of the workspace${detail}`,
    'organization.purge': () => `deleted every key of the organization${detail}`,
    'token.create': () => `created a token${detail}`,
    'token.revoke': () => `revoked a token${detail}`,
    'session.create': () => `signed in${detail}`,
    'session.end': () => `ended a session${detail}`,
    'access.denied': () => `was refused${key ? ' on ' + key : ''}${detail}`,
  }[e.action];
  const text = what ? what().replace(/,$/, '') : `${e.action}${key ? ' ' + key : ''}${detail}`;
  return `${actorLabel(e.actor, e.actorName)} ${text}` + (e.outcome && e.outcome !== 'success' ? ` — ${e.outcome.replace('_', ' ')}` : '');
}

// ---- Calls through the credential proxy ---------------------------------------

let callsCursor = '';

// renderCalls lists a workspace's proxied calls, 25 at a time; the section
// stays hidden for an organization, and where the replica or the token
// does not reach the records.
async function renderCalls(more = false) {
  $('calls-error').textContent = '';
  if (current.kind !== 'workspace') { $('calls-section').hidden = true; return; }
  let page;
  try {
    const q = new URLSearchParams({ limit: '25' });
    if (more && callsCursor) q.set('cursor', callsCursor);
    page = await api('GET', `${base()}/proxy-calls?${q}`);
  } catch (e) {
    if (e.status === 403 || e.status === 404) { $('calls-section').hidden = true; return; }
    $('calls-section').hidden = false;
    $('calls-error').textContent = e.message;
    return;
  }
  const rows = $('calls');
  if (!more) rows.replaceChildren();
  for (const c of page.calls) {
    const key = c.keyId ? `${c.scope === 'workspace' ? '' : c.scope + ' '}${c.keyId}${c.keyVersion ? ' v' + c.keyVersion : ''}` : 'none';
    const status = String(c.status || 'cut off') + (c.retried ? ' (retried with another key)' : '');
    rows.append(el('tr', { 'data-call': c.id },
      el('td', { text: when(c.at) }), el('td', { text: providerName(c.provider) }), el('td', { text: key }),
      el('td', { text: status }), el('td', { text: `${Math.round(c.durationMs)} ms` }),
      el('td', { text: c.byok ? 'no (BYOK)' : (c.keyId ? 'yes (hosted key)' : '-') }),
      el('td', { text: c.caller || '-' })));
  }
  if (!rows.childElementCount) rows.append(el('tr', {}, el('td', { colspan: '7', class: 'hint', text: 'No call went through the proxy yet.' })));
  callsCursor = page.nextCursor || '';
  $('calls-more').hidden = !callsCursor;
  $('calls-section').hidden = false;
}
$('calls-more').addEventListener('click', () => renderCalls(true));

async function renderAudit(more = false) {
  $('audit-error').textContent = '';
  if (!more) auditCursor = '';
  let page;
  try {
    page = await api('GET', auditQuery(25, more ? auditCursor : ''));
  } catch (e) {
    if (e.status === 403) { $('audit-section').hidden = true; return; }
    $('audit-section').hidden = false;
    $('audit-error').textContent = e.message;
    return;
  }
  const list = $('audit');
  if (!more) list.replaceChildren();
  const actors = new Set([...$('audit-actors').children].map((o) => o.value));
  for (const e of page.events) {
    // Denials of one token, key and route are one line with their count,
    // however the server aggregated them (the first at once, the rest per
    // interval).
    const group = e.action === 'access.denied'
      ? JSON.stringify([e.actor, e.provider, e.keyId, (e.detail || '').replace(/ \(\d+ more within .*\)$/, '')]) : '';
    const last = list.lastElementChild;
    if (group && last && last.dataset.group === group) {
      const n = Number(last.dataset.count) + Math.max(e.count, 1);
      last.dataset.count = String(n);
      last.querySelector('.count').textContent = ` ×${n}`;
      last.querySelector('.since').textContent = `, first ${when(e.occurredAt)}`;
      continue;
    }
    const n = Math.max(e.count, 1);
    const line = group ? auditLine({ ...e, detail: JSON.parse(group)[3] }) : auditLine(e);
    list.append(el('li', { 'data-action': e.action, 'data-outcome': e.outcome, 'data-group': group || undefined, 'data-count': String(n) },
      el('span', { class: 'when', text: when(e.occurredAt) }), ' ', line,
      el('span', { class: 'count', text: n > 1 ? ` ×${n}` : '' }), el('span', { class: 'since hint', text: '' }),
      el('span', { class: 'visually-hidden', text: ` (${e.action})` })));
    if (!actors.has(e.actor)) {
      actors.add(e.actor);
      $('audit-actors').append(el('option', { value: e.actor, label: actorLabel(e.actor, e.actorName) }));
    }
  }
  if (!list.childElementCount) list.append(el('li', { class: 'hint', text: 'No event matches.' }));
  auditCursor = page.nextCursor || '';
  $('audit-more').hidden = !auditCursor;
  $('audit-section').hidden = false;
  list.dataset.filters = JSON.stringify(auditFilters); // what the list shows now
}
$('audit-filters').addEventListener('submit', (ev) => {
  ev.preventDefault();
  auditFilters = { action: $('audit-action').value, outcome: $('audit-outcome').value, actor: $('audit-actor').value.trim() };
  renderAudit();
});
$('audit-more').addEventListener('click', () => renderAudit(true));

// The download is the filtered trail as JSON lines, read page by page
// (at most 10,000 events), built in the page: no token in a URL.
$('audit-download').addEventListener('click', async () => {
  const button = $('audit-download');
  button.disabled = true;
  try {
    const lines = [];
    let cursor = '';
    do {
      const page = await api('GET', auditQuery(200, cursor));
      for (const e of page.events) lines.push(JSON.stringify(e));
      cursor = page.nextCursor || '';
    } while (cursor && lines.length < 10000);
    const blob = new Blob(lines.map((l) => l + '\n'), { type: 'application/x-ndjson' });
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: `keybroker-audit-${current.kind}-${current.id}.jsonl` });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    toast(`Downloaded ${lines.length} audit events${cursor ? ' (the newest 10,000)' : ''}.`);
  } catch (e) {
    $('audit-error').textContent = e.message;
  } finally {
    button.disabled = false;
  }
});

// ---- Tokens (operators) -----------------------------------------------------

async function renderTokens() {
  $('token-error').textContent = '';
  const list = $('token-list');
  const tokens = (await api('GET', '/v1/tokens')).tokens;
  list.replaceChildren();
  for (const t of tokens) {
    const reach = [...t.workspaces.map((w) => 'workspace ' + w), ...t.organizations.map((o) => 'organization ' + o)];
    const item = el('li', { 'data-token': t.id },
      el('strong', { text: t.description || '(no description)' }), ` ${t.id} `,
      el('span', { class: 'badge', 'data-token-state': t.id, text: t.state }),
      el('div', { text: `role ${t.role}${reach.length ? ', ' + reach.join(', ') : ''}` }),
      el('div', { class: 'hint', text: `created ${when(t.createdAt)} by ${actorLabel(t.createdBy)}` +
        (t.expiresAt ? `, ${t.state === 'expired' ? 'expired' : 'expires'} ${when(t.expiresAt)}` : ', never expires') +
        (t.revokedAt ? `, revoked ${when(t.revokedAt)}` : '') }));
    if (t.state === 'active' && t.id !== me.tokenId) {
      item.append(el('button', { type: 'button', class: 'danger', 'data-revoke': t.id, text: 'Revoke',
        'aria-label': `Revoke ${t.description || t.id}`,
        onclick: async () => {
          const ok = await confirmAction({ title: `Revoke ${t.description ? "'" + t.description + "'" : t.id}?`, ok: 'Revoke the token', danger: true,
            text: `Every request made with ${t.id} (role ${t.role}) is refused from now on, on every replica. This cannot be undone: a new token would be needed.` });
          if (!ok) return;
          try {
            await api('DELETE', `/v1/tokens/${t.id}`);
            await renderTokens();
            toast(`Revoked ${t.description || t.id}.`);
          } catch (e) {
            $('token-error').textContent = e.message;
            toast(e.message, true);
          }
        } }));
    }
    list.append(item);
  }
}

const splitIds = (s) => s.split(',').map((x) => x.trim()).filter(Boolean);

$('token-form').addEventListener('submit', async (ev) => {
  ev.preventDefault();
  $('token-error').textContent = '';
  const body = { role: $('token-role').value, description: $('token-description').value.trim() };
  const ws = splitIds($('token-workspaces').value), orgs = splitIds($('token-organizations').value);
  if (ws.length) body.workspaces = ws;
  if (orgs.length) body.organizations = orgs;
  if ($('token-days').value) body.ttlSeconds = Number($('token-days').value) * 86400;
  try {
    const created = await api('POST', '/v1/tokens', body);
    showCreatedToken(created.token);
    created.token = '';
    $('token-form').reset();
    await renderTokens();
    toast(`Created ${created.description || created.id} (${created.id}). Copy the token now: it is not shown again.`);
  } catch (e) {
    $('token-error').textContent = e.message;
  }
});

// The created token lives in the panel's text alone until "Done" (or
// leaving the view) drops it.
function showCreatedToken(token) {
  $('new-token').textContent = token;
  $('token-created').hidden = false;
  $('copy-token').focus();
}
function dropCreatedToken() {
  $('new-token').textContent = '';
  $('token-created').hidden = true;
}
$('copy-token').addEventListener('click', async () => {
  try {
    await navigator.clipboard.writeText($('new-token').textContent);
    toast('Copied the token to the clipboard.');
  } catch {
    const range = document.createRange();
    range.selectNodeContents($('new-token'));
    getSelection().removeAllRanges();
    getSelection().addRange(range);
    toast('The browser refused the clipboard: the token is selected, press Ctrl+C (⌘C) to copy it.', true);
  }
});
$('token-done').addEventListener('click', () => {
  dropCreatedToken();
  $('token-description').focus();
});

// ---- Start ------------------------------------------------------------------

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
    const id = $(input).value.trim();
    try {
      if (!idRule.test(id)) throw new Error(`"${id}" is not a ${kind} id: lower-case letters, digits, "-" and "_", starting with a letter or digit`);
      location.hash = `#/${kind}/${id}`;
    } catch (e) {
      ++openSeq;
      showOpenError(e);
    }
  });
}

// start signs in with the token of this tab, else with the session
// cookie when keybroker signs people in, else shows the sign-in view.
async function start() {
  const main = $('main');
  main.setAttribute('aria-busy', 'true');
  const config = fetch('/auth/config', { credentials: 'same-origin' })
    .then((r) => (r.ok ? r.json() : null)).catch(() => null);
  let message = '';
  try {
    const token = store.getItem('keybroker.token');
    if (token) {
      await signIn(token).catch(() => store.removeItem('keybroker.token'));
      signInConfig = await config;
    } else {
      signInConfig = await config;
      if (signInConfig && signInConfig.oidc) {
        await signInBySession().catch((e) => { if (e.status !== 401) message = e.message; });
      }
    }
  } finally {
    main.removeAttribute('aria-busy');
  }
  if (!me || $('views').hidden) {
    me = null;
    bySession = false;
    showSignIn(message);
  }
}
start();
