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
let adminProviders = []; // GET /v1/providers' adminProviders: the admin APIs (rotation, revocation)
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

// enter shows the page to whoever signed in (me).
async function enter() {
  const catalogue = await api('GET', '/v1/providers');
  providers = catalogue.providers;
  adminProviders = catalogue.adminProviders || [];
  $('who').textContent = whoText();
  $('who').title = $('who').textContent;
  $('who').hidden = false;
  $('signout').hidden = false;
  $('signin-section').hidden = true;
  $('views').hidden = false;
  $('switcher-box').hidden = false;
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
  closeSwitcher();
  closeMenus();
  for (const d of ['panel', 'token-dialog', 'confirm']) if ($(d).open) $(d).close();
  for (const id of ['views', 'who', 'signout', 'switcher-box', 'workspaces-section', 'tokens-section', 'workspace-section']) $(id).hidden = true;
  dropCreatedToken();
  showSignIn('Your session has ended or expired. Sign in again.');
}

const reachable = (s) => me.role === 'operator' || (s.kind === 'workspace' ? me.workspaces : me.organizations).includes(s.id);
const idRule = /^[a-z0-9][a-z0-9_-]{0,62}$/;

// openSeq counts the views shown: an opening that another view (or an
// invalid id) has overtaken says nothing (its renders fail once the scope
// is gone, and that is no error of the view now shown).
let openSeq = 0;

// showView shows one of the signed-in views: 'home' (the scopes), 'tokens'
// or 'scope'. The scope finder sits in the home view, or in the header's
// switcher when a scope or the tokens are on screen.
function showView(view) {
  $('workspaces-section').hidden = view !== 'home';
  $('tokens-section').hidden = view !== 'tokens';
  $('workspace-section').hidden = view !== 'scope';
  const finder = $('scope-finder');
  if (view === 'home') {
    closeSwitcher();
    $('finder-home').append(finder);
  } else if (finder.parentElement !== $('switcher')) $('switcher').append(finder);
  for (const [link, on] of [['nav-tokens', view === 'tokens'], ['nav-scopes', view === 'home']]) {
    if (on) $(link).setAttribute('aria-current', 'page');
    else $(link).removeAttribute('aria-current');
  }
  const kind = view === 'scope' && current ? (current.kind === 'workspace' ? 'Workspace' : 'Organization') : '';
  $('switch-kind').textContent = kind;
  $('switch-label').textContent = view === 'scope' && current ? current.id : 'Switch workspace';
}

// route shows the view the URL names.
async function route() {
  if (!me) return;
  closeMenus();
  const m = location.hash.match(/^#\/(workspace|organization)\/(.+)$/);
  const tokens = location.hash === '#/tokens' && me.role === 'operator';
  dropCreatedToken();
  if (tokens) {
    ++openSeq;
    current = null;
    showView('tokens');
    await renderTokens().catch((e) => { $('token-list-error').textContent = e.message; });
    return;
  }
  const seq = ++openSeq;
  if (m) await openScope({ kind: m[1], id: decodeURIComponent(m[2]) }).catch((e) => { if (seq === openSeq) showOpenError(e); });
  else {
    current = null;
    showView('home');
  }
}
window.addEventListener('hashchange', () => {
  if (signInConfig && signInConfig.oidc && !me) updateLoginLink();
  route();
});

// ---- The scope switcher ------------------------------------------------------

// renderScopes lists the scopes the caller may open (GET /v1/scopes),
// matching query, as you type; more appends the next page.
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
  for (const sc of page.scopes) list.append(scopeButton(sc, { [`data-${sc.kind}`]: sc.id }));
  if (!list.childElementCount) list.append(el('p', { class: 'hint', text: query ? `Nothing matches "${query}".` : 'No workspace or organization yet.' }));
  scopeCursor = page.nextCursor || '';
  $('scope-more').hidden = !scopeCursor;
  list.dataset.query = query; // what the list shows now
  renderRecent();
}

function scopeButton(sc, attrs = {}) {
  const label = (sc.kind === 'workspace' ? 'Workspace ' : 'Organization ') + sc.id;
  return el('button', { type: 'button', 'data-scope': `${sc.kind}/${sc.id}`, ...attrs,
    onclick: () => { closeSwitcher(); location.hash = `#/${sc.kind}/${sc.id}`; } }, label);
}

// Recent scopes: the last five opened in this browser (ids only, no key,
// no token), forgotten at sign-out.
const recentKey = 'keybroker.recent';
function recentScopes() {
  try { return JSON.parse(localStorage.getItem(recentKey) || '[]').filter((s) => s && idRule.test(s.id) && reachable(s)); } catch { return []; }
}
function rememberScope(scope) {
  const list = [scope, ...recentScopes().filter((s) => s.kind !== scope.kind || s.id !== scope.id)].slice(0, 5);
  try { localStorage.setItem(recentKey, JSON.stringify(list)); } catch { /* storage refused: no recent list */ }
}
function renderRecent() {
  const q = $('scope-search').value.trim();
  const recent = recentScopes().filter((s) => !q || s.id.includes(q));
  $('scope-recent').replaceChildren(...recent.map((s) => el('li', {}, scopeButton(s, { 'data-recent': `${s.kind}/${s.id}` }))));
  $('scope-recent-box').hidden = !recent.length;
}

$('scope-search').addEventListener('input', () => renderScopes($('scope-search').value.trim()).catch(showOpenError));
$('scope-search-form').addEventListener('submit', (ev) => ev.preventDefault());
$('scope-more').addEventListener('click', () => renderScopes($('scope-search').value.trim(), true).catch(showOpenError));

function openSwitcher() {
  if ($('workspaces-section').hidden === false) { $('scope-search').focus(); return; }
  $('switcher').hidden = false;
  $('scope-switch').setAttribute('aria-expanded', 'true');
  renderRecent();
  $('scope-search').focus();
}
function closeSwitcher(focus = false) {
  if ($('switcher').hidden) return;
  $('switcher').hidden = true;
  $('scope-switch').setAttribute('aria-expanded', 'false');
  if (focus) $('scope-switch').focus();
}
$('scope-switch').addEventListener('click', () => ($('switcher').hidden ? openSwitcher() : closeSwitcher()));
$('switcher').addEventListener('keydown', (ev) => { if (ev.key === 'Escape') { ev.preventDefault(); closeSwitcher(true); } });
document.addEventListener('click', (ev) => {
  if (!$('switcher').hidden && !$('switcher-box').contains(ev.target)) closeSwitcher();
  if (openMenu && !openMenu.box.contains(ev.target)) closeMenus();
});
// Arrow keys move through the switcher's scopes.
$('switcher').addEventListener('keydown', (ev) => {
  if (ev.key !== 'ArrowDown' && ev.key !== 'ArrowUp') return;
  const items = [$('scope-search'), ...$('switcher').querySelectorAll('button[data-scope]')];
  const i = items.indexOf(document.activeElement);
  if (i < 0) return;
  ev.preventDefault();
  items[Math.max(0, Math.min(items.length - 1, i + (ev.key === 'ArrowDown' ? 1 : -1)))].focus();
});

function showOpenError(e) {
  current = null;
  showView('home');
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
  try { localStorage.removeItem(recentKey); } catch { /* nothing kept */ }
  location.hash = '';
  location.reload();
}

// ---- Tabs -------------------------------------------------------------------

// selectTab shows one part of the scope: its overview and keys, or its
// activity (calls and audit trail). The arrow keys move between tabs.
function selectTab(id) {
  for (const tab of document.querySelectorAll('[role=tab]')) {
    const on = tab.id === id;
    tab.setAttribute('aria-selected', String(on));
    tab.tabIndex = on ? 0 : -1;
    $(tab.getAttribute('aria-controls')).hidden = !on;
  }
}
for (const tab of document.querySelectorAll('[role=tab]')) {
  tab.addEventListener('click', () => selectTab(tab.id));
  tab.addEventListener('keydown', (ev) => {
    if (ev.key !== 'ArrowRight' && ev.key !== 'ArrowLeft') return;
    const tabs = [...document.querySelectorAll('[role=tab]')];
    const next = tabs[(tabs.indexOf(tab) + (ev.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
    selectTab(next.id);
    next.focus();
  });
}

async function openScope(scope) {
  $('open-error').textContent = '';
  if (!idRule.test(scope.id)) {
    throw new Error(`"${scope.id}" is not a ${scope.kind} id: lower-case letters, digits, "-" and "_", starting with a letter or digit`);
  }
  if (!reachable(scope)) throw new Error(me.person ? `You have no role in ${scope.kind} ${scope.id}.` : `This token does not reach ${scope.kind} ${scope.id}.`);
  const same = current && current.kind === scope.kind && current.id === scope.id;
  current = scope;
  store.setItem('keybroker.scope', JSON.stringify(scope));
  rememberScope(scope);
  if (location.hash !== `#/${scope.kind}/${scope.id}`) history.replaceState(null, '', `#/${scope.kind}/${scope.id}`);
  const ws = scope.kind === 'workspace';
  $('workspace-title').textContent = (ws ? 'Workspace ' : 'Organization ') + scope.id;
  $('scope-hint').textContent = ws
    ? "Keys are stored in Vault; this page never shows one. Calls made with the workspace's own keys, or its organization's, are not billed by the platform."
    : "Keys are stored in Vault; this page never shows one. The organization's workspaces use these keys when they have no usable key of their own (and inherit), without being billed by the platform.";
  if (roleIn(scope) === 'reader') {
    $('scope-hint').textContent += ` You are a reader of this ${scope.kind}: you see its keys' metadata and cannot change them.`;
  }
  showView('scope');
  if (!same) selectTab('tab-keys');
  $('settings-section').hidden = !ws;
  $('linked-section').hidden = ws;
  $('add-provider').hidden = !canEdit();
  auditFilters = { action: '', outcome: '', actor: '' };
  $('audit-filters').reset();
  // Busy until every part of the scope is shown: assistive technologies
  // (and the browser tests) wait for it before reading or acting.
  const section = $('workspace-section');
  section.setAttribute('aria-busy', 'true');
  try {
    // The rotation schedule is in the scope's settings card.
    const life = $('lifecycle-setting');
    (ws ? $('settings-section') : $('linked-section')).insertBefore(life, ws ? $('settings-error') : null);
    if (ws) await renderSettings();
    else await renderLinked();
    await renderLifecycle();
    await renderKeys();
    await Promise.all([renderCalls(), renderAudit(), renderUsage()]);
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
    : settings.inherit ? `Inherit is on: providers without a usable workspace key use ${org}'s keys, billed to ${org}'s own provider accounts, not by the platform.`
      : `Inherit is off: the workspace does not use ${org}'s keys.`;
  $('fallback-text').textContent = settings.hostedFallback
    ? "Hosted fallback is on: providers without a usable key use the platform's hosted key, billed at hosted rates."
    : 'Hosted fallback is off: providers without a usable key fail, so nothing is billed at hosted rates.';
  const toggle = $('fallback-toggle');
  toggle.hidden = !canEdit();
  toggle.textContent = settings.hostedFallback ? 'Turn off' : 'Turn on';
  toggle.setAttribute('aria-label', settings.hostedFallback ? 'Turn off the hosted fallback (fail closed)' : 'Turn on the hosted fallback (billed)');
  const link = $('org-change');
  link.hidden = roleIn(current) !== 'operator';
  link.textContent = org ? 'Change…' : 'Link…';
  link.setAttribute('aria-label', org ? `Change the organization of ${current.id}…` : `Link ${current.id} to an organization…`);
  const inherit = $('inherit-toggle');
  inherit.hidden = !canEdit() || !org;
  inherit.textContent = settings.inherit ? 'Stop' : `Use ${org}'s keys`;
  inherit.setAttribute('aria-label', settings.inherit ? `Stop using ${org}'s keys` : `Use ${org}'s keys`);
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

// ---- The rotation schedule (rotateAfter) ------------------------------------

// lifecycle of the open scope: GET .../lifecycle (null where this server
// does not keep it).
let lifecycle = null;

async function renderLifecycle() {
  lifecycle = null;
  try {
    lifecycle = await api('GET', `${base()}/lifecycle`);
  } catch (e) {
    if (e.status !== 501 && e.status !== 403 && e.status !== 404) throw e;
  }
  const rotating = providers.filter((p) => p.rotation).map((p) => p.displayName).join(', ') || 'none';
  $('lifecycle-setting').hidden = !lifecycle;
  if (!lifecycle) return;
  $('lifecycle-text').textContent = lifecycle.rotateAfter
    ? `Rotation: keys older than ${durationWords(lifecycle.rotateAfter)} are rotated at the provider where it can (${rotating}).`
    : 'Rotation: no schedule.';
  const button = $('lifecycle-change');
  button.hidden = !canEdit();
  button.setAttribute('aria-label', 'Change the rotation schedule…');
}

// lifecycleForm sets the scope's rotateAfter ("90d", "36h"; empty: no
// schedule). A schedule rotates keys older than it on the next pass, so
// it asks first.
function lifecycleForm() {
  const input = el('input', { id: 'rotate-after', autocomplete: 'off', spellcheck: 'false', value: lifecycle.rotateAfter || '', placeholder: '90d',
    'aria-describedby': 'rotate-after-hint rotate-after-err' });
  const err = el('p', { class: 'error', id: 'rotate-after-err', role: 'alert' });
  const form = el('form', { id: 'lifecycle-form', method: 'post' },
    el('label', { for: 'rotate-after', text: 'Rotate keys older than' }), input,
    el('p', { class: 'hint', id: 'rotate-after-hint', text: 'Days (90d) or hours (36h), from 1 hour to 3650 days; empty: no schedule. ' +
      `Rotation at the provider needs its admin API (${providers.filter((p) => p.rotation).map((p) => p.displayName).join(', ') || 'none here'}) ` +
      `and the ${current.kind}'s admin credential.` }),
    err, el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Save' })));
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    err.textContent = '';
    input.removeAttribute('aria-invalid');
    const value = input.value.trim();
    if (value && !await confirmAction({ title: `Rotate keys older than ${durationWords(value)}?`, ok: 'Save the schedule',
      text: `keybroker rotates the ${current.kind}'s keys older than ${durationWords(value)} at their provider, where it can, within minutes: ` +
        'each gets a new key that serves at once, and the old one is deleted there after the grace period.' })) return;
    try {
      await api('PUT', `${base()}/lifecycle`, { rotateAfter: value });
      closePanel();
      await renderLifecycle();
      await renderAudit();
      $('lifecycle-change').focus();
      toast('Saved. ' + $('lifecycle-text').textContent);
    } catch (e) {
      err.textContent = e.message;
      input.setAttribute('aria-invalid', 'true');
      input.focus();
      toast(e.message, true);
    }
  });
  return form;
}
$('lifecycle-change').addEventListener('click', () => openPanel('Rotation schedule', '#lifecycle-change', lifecycleForm()));

// orgForm links the workspace to an organization, or unlinks it
// (operators): the side panel, then a confirmation that says what calls
// will use.
function orgForm() {
  const ws = current.id, org = settings.organization;
  const input = el('input', { id: 'org-id', autocomplete: 'off', spellcheck: 'false', value: org || '', 'aria-describedby': 'org-hint org-err' });
  const err = el('p', { class: 'error', id: 'org-err', role: 'alert' });
  const save = async (next) => {
    err.textContent = '';
    if (!next && !org) { err.textContent = 'Type the id of the organization to link the workspace to.'; return; }
    if (next && !idRule.test(next)) { err.textContent = `"${next}" is not an organization id: lower-case letters, digits, "-" and "_", starting with a letter or digit`; return; }
    const q = next
      ? { title: `Link ${ws} to ${next}?`, ok: 'Link', text: settings.inherit
        ? `Providers without a usable key of ${ws} will use ${next}'s keys (inherit is on), billed to ${next}'s own provider accounts.`
        : `${ws} will belong to ${next}; it does not use ${next}'s keys while inherit is off.` }
      : { title: `Unlink ${ws} from ${org}?`, ok: 'Unlink', danger: true,
        text: `Providers without a usable key of ${ws} will no longer use ${org}'s keys: they go to the hosted fallback (${settings.hostedFallback ? 'billed at hosted rates' : 'off, so those calls fail'}).` };
    if (!await confirmAction(q)) return;
    try {
      await api('PUT', `${base()}/settings`, { organization: next });
      closePanel();
      await refresh();
      toast(next ? `Linked ${ws} to ${next}.` : `Unlinked ${ws} from ${org}.`);
      $('org-change').focus();
    } catch (e) {
      err.textContent = e.message;
    }
  };
  const form = el('form', { id: 'org-form', method: 'post' },
    el('label', { for: 'org-id', text: 'Organization id' }), input,
    el('p', { class: 'hint', id: 'org-hint', text: "The workspace uses the organization's keys when it has no usable key of its own and inherit is on." }), err,
    el('div', { class: 'actions' },
      org ? el('button', { type: 'button', id: 'org-unlink', class: 'danger', text: `Unlink from ${org}`, onclick: () => save('') }) : '',
      el('button', { type: 'submit', class: 'primary', text: org ? 'Change' : 'Link' })));
  form.addEventListener('submit', (ev) => { ev.preventDefault(); save(input.value.trim()); });
  return form;
}
$('org-change').addEventListener('click', () => openPanel(`Organization of ${current.id}`, '#org-change', orgForm()));

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
    case 'organization': return `Calls use organization ${e.scopeId}'s ${which} (${n}; BYOK, not billed by the platform)${e.reason === 'expired' ? "; the workspace's keys are past their expiry" : ''}`;
    case 'hosted': return "Using hosted key: calls are billed at the platform's hosted rates" + (e.reason === 'expired' ? " (the keys that would serve are past their expiry)" : '');
  }
  if (e.reason === 'expired') return "No key: calls fail (the keys that would serve are past their expiry)";
  if (e.reason === 'hosted_fallback_off') return 'No key: calls fail (hosted fallback is off)';
  if (e.reason === 'hosted_keys_unavailable') return "No key: calls fail (the platform's hosted keys are disabled)";
  if ((e.reason || '').endsWith('_keys_cooling_down')) return 'No key now: every key that could serve is cooling down (calls get 429 with Retry-After)';
  return 'No key: calls fail (the platform has no hosted key for this provider)';
}


// ---- The side panel and the row menus -----------------------------------------

// openPanel shows a form (or a key's history) in the side panel, a modal
// dialog: the focus goes to its first field, Escape or × closes it, and
// the focus then goes back to what opened it (found again by selector,
// when a re-render replaced it).
let panelReturn = '';
function openPanel(title, returnTo, ...nodes) {
  $('panel-title').textContent = title;
  $('panel-body').replaceChildren(...nodes);
  if (!$('panel').open) {
    panelReturn = returnTo || '';
    $('panel').showModal();
  }
  const first = $('panel-body').querySelector('input:not([type=hidden]):not([disabled]), select, button');
  (first || $('panel-close')).focus();
}
function closePanel() {
  if ($('panel').open) $('panel').close();
}
$('panel-close').addEventListener('click', closePanel);
$('panel').addEventListener('close', () => {
  // What the panel held (a form with secret fields) leaves the page.
  $('panel-body').replaceChildren();
  const back = panelReturn && document.querySelector(panelReturn);
  panelReturn = '';
  if (back) back.focus();
});

// A key row's actions menu: a button that opens a list of actions (a
// menu: the arrow keys move, Escape closes and returns to the button).
let openMenu = null; // { box, button, menu }
function closeMenus(focus = false) {
  if (!openMenu) return;
  const { button, menu } = openMenu;
  openMenu = null;
  menu.hidden = true;
  button.setAttribute('aria-expanded', 'false');
  if (focus) button.focus();
}
function actionsMenu(id, label, items) {
  const menuId = 'menu-' + id.replace(/[^a-z0-9_-]/gi, '-');
  const button = el('button', { type: 'button', class: 'menu-btn', 'data-menu': id, 'aria-haspopup': 'menu', 'aria-expanded': 'false',
    'aria-controls': menuId, 'aria-label': `Actions for ${label}` }, el('span', { 'aria-hidden': 'true', text: '⋯' }));
  const menu = el('div', { class: 'menu', role: 'menu', id: menuId, 'aria-label': `Actions for ${label}`, hidden: true });
  const box = el('div', { class: 'menu-box' }, button, menu);
  for (const item of items) {
    if (item === '-') { menu.append(el('hr', { 'aria-hidden': 'true' })); continue; }
    const b = el('button', { type: 'button', role: 'menuitem', tabindex: '-1', class: item.danger ? 'danger-item' : undefined,
      disabled: item.disabled, ...item.attrs }, item.text);
    b.addEventListener('click', () => { closeMenus(); item.run(); });
    menu.append(b);
  }
  const entries = () => [...menu.querySelectorAll('button:not([disabled])')];
  button.addEventListener('click', () => {
    if (openMenu && openMenu.menu === menu) { closeMenus(); return; }
    closeMenus();
    menu.hidden = false;
    button.setAttribute('aria-expanded', 'true');
    openMenu = { box, button, menu };
    entries()[0]?.focus();
  });
  menu.addEventListener('keydown', (ev) => {
    const list = entries();
    const i = list.indexOf(document.activeElement);
    const go = { ArrowDown: i + 1, ArrowUp: i - 1, Home: 0, End: list.length - 1 }[ev.key];
    if (go !== undefined) {
      ev.preventDefault();
      list[(go + list.length) % list.length].focus();
    } else if (ev.key === 'Escape') {
      ev.preventDefault();
      closeMenus(true);
    } else if (ev.key === 'Tab') closeMenus();
  });
  return box;
}

// ---- Overview and pools ---------------------------------------------------------

let pools = {}; // provider id → its keys, as last shown
let adminPools = {}; // admin provider id → its admin credentials, as last shown
let effective = {}; // provider id → GET .../effective's answer (workspaces)
const plural = (n, one, many = one + 's') => `${n} ${n === 1 ? one : many}`;
const sortPool = (pool) => pool.slice().sort((a, b) => a.priority - b.priority || String(a.createdAt).localeCompare(String(b.createdAt)));
const day = 86400000;

// renderKeys reads the scope's keys (a workspace's in one call, an
// organization's pool by pool) and, for a workspace, what serves each
// provider; then draws the overview and one table per provider with keys.
async function renderKeys() {
  if (current.kind === 'workspace') {
    const [list, eff] = await Promise.all([api('GET', `${base()}/keys`), api('GET', `${base()}/effective`)]);
    effective = Object.fromEntries(eff.providers.map((e) => [e.provider, e]));
    pools = Object.fromEntries(providers.map((p) => [p.id, sortPool(list.keys.filter((k) => k.provider === p.id))]));
    adminPools = Object.fromEntries(adminProviders.map((p) => [p.id, sortPool(list.keys.filter((k) => k.provider === p.id))]));
  } else {
    const all = await Promise.all([...providers, ...adminProviders].map((p) => api('GET', poolPath(p.id)).then((r) => r.keys)));
    effective = {};
    pools = Object.fromEntries(providers.map((p, i) => [p.id, all[i]]));
    adminPools = Object.fromEntries(adminProviders.map((p, i) => [p.id, all[providers.length + i]]));
  }
  renderSources();
  renderAttention();
  renderUsageFigures();
  const box = $('keys');
  box.replaceChildren();
  for (const p of providers) if (pools[p.id].length) box.append(providerSection(p, pools[p.id]));
  const admins = adminProviders.filter((p) => adminPools[p.id].length);
  if (admins.length) box.append(adminSection(admins));
  if (!box.childElementCount) {
    box.append(el('p', { class: 'card empty', text: canEdit()
      ? `No key yet. Add a provider to bring the ${current.kind}'s own key.`
      : `The ${current.kind} has no key of its own.` }));
  }
}

// statusOf says in words what serves a provider's calls (a workspace) or
// how its pool stands (an organization).
function statusOf(p) {
  const pool = pools[p.id] || [];
  if (current.kind === 'workspace') {
    const expired = pool.length && pool.some((k) => k.expiry === 'expired') && !pool.some((k) => k.state === 'active' && k.expiry !== 'expired');
    return servedBy(effective[p.id]) + (expired && effective[p.id]?.scope !== 'workspace' ? ". The workspace's keys are past their expiry" : '');
  }
  return pool.length ? `${pool.filter((k) => k.state === 'active').length} of ${plural(pool.length, 'key')} active` : 'No key';
}

// sourceOf is where a provider's calls get their key: own, organization,
// hosted (billed), failing (keys, none usable), or none.
function sourceOf(p) {
  const pool = pools[p.id] || [];
  if (current.kind !== 'workspace') {
    if (!pool.length) return 'none';
    return pool.some((k) => k.state === 'active' && (k.health || 'healthy') === 'healthy') ? 'own' : 'fails';
  }
  const e = effective[p.id];
  if (!e) return 'none';
  if (e.scope === 'workspace') return 'own';
  if (e.scope === 'organization') return 'organization';
  if (e.scope === 'hosted') return pool.length ? 'fails' : 'hosted';
  return pool.length || (e.reason || '').endsWith('_keys_cooling_down') ? 'fails' : 'none';
}
const sourceWords = { own: 'Own keys', organization: 'Organization', hosted: 'Hosted, billed', fails: 'Failing', none: 'No key' };

function sourceItem(p) {
  const src = sourceOf(p);
  const e = effective[p.id];
  const badge = src === 'organization' && e ? `Organization ${e.scopeId}` : src === 'fails' && e && e.scope === 'hosted' ? 'Falls back, billed' : sourceWords[src];
  return el('li', { 'data-source': p.id },
    el('span', { class: 'pname', text: p.displayName }),
    el('span', {}, el('span', { class: 'badge ' + src, text: badge })),
    el('span', { class: 'why', 'data-status': p.id, text: statusOf(p) }));
}

// renderSources: which providers serve and from where. Those with keys,
// inherited ones and failing ones are listed; the rest (hosted and
// billed, or no key) behind one button.
let sourcesOpen = false;
function renderSources() {
  const main = [], rest = [];
  for (const p of providers) (['own', 'organization', 'fails'].includes(sourceOf(p)) ? main : rest).push(p);
  $('sources').replaceChildren(...main.map(sourceItem));
  if (!main.length) $('sources').append(el('li', { class: 'hint', text: `No provider uses the ${current.kind}'s own keys yet.` }));
  const hosted = rest.filter((p) => sourceOf(p) === 'hosted').length;
  const box = $('sources-none');
  box.replaceChildren();
  if (!rest.length) return;
  const words = [hosted ? `${hosted} hosted and billed` : '', rest.length - hosted ? `${rest.length - hosted} without a key` : ''].filter(Boolean).join(', ');
  const list = el('ul', { class: 'sources', id: 'sources-rest', hidden: !sourcesOpen }, ...rest.map(sourceItem));
  const toggle = el('button', { type: 'button', class: 'ghost small-btn', id: 'sources-more', 'aria-expanded': String(sourcesOpen), 'aria-controls': 'sources-rest',
    text: `${sourcesOpen ? 'Hide' : 'Show'} ${plural(rest.length, 'more provider')} (${words})` });
  toggle.addEventListener('click', () => { sourcesOpen = !sourcesOpen; renderSources(); $('sources-more').focus(); });
  box.append(toggle, list);
}

// expiryBadge is a key's expiry as the API says it (expiry: expiring
// within the warning window, or expired), as a badge's class and words;
// null when it is valid or has none.
function expiryBadge(k) {
  if (!k.expiresAt) return null;
  if (k.expiry === 'expired') return ['expired', `expired ${when(k.expiresAt).slice(0, 10)}`];
  if (k.expiry !== 'expiring') return null;
  const left = Date.parse(k.expiresAt) - Date.now();
  return ['expiring', left < day ? 'expires within a day' : `expires in ${plural(Math.ceil(left / day), 'day')}`];
}

// attentionOf says why a key needs attention ('' when it does not):
// failing, cooling down, expired or expiring within 14 days, unused for
// 30 days.
function attentionOf(k) {
  const now = Date.now();
  if (k.health === 'failing') return ['failing', healthInWords(k)];
  if (k.health === 'cooling_down') return ['cooling_down', healthInWords(k)];
  const exp = expiryBadge(k);
  if (exp) return exp;
  if (k.state === 'active') {
    if (k.lastUsedAt && now - Date.parse(k.lastUsedAt) > 30 * day) return ['unused', `unused since ${when(k.lastUsedAt)}`];
    if (!k.lastUsedAt && now - Date.parse(k.createdAt) > 30 * day) return ['unused', 'never used in 30 days'];
  }
  return null;
}

function renderAttention() {
  const list = $('attention');
  list.replaceChildren();
  for (const p of [...providers, ...adminProviders]) {
    for (const k of pools[p.id] || adminPools[p.id] || []) {
      const a = attentionOf(k);
      if (a) list.append(el('li', { 'data-attention': `${p.id}/${k.keyId}` }, el('span', { class: 'badge wrap ' + a[0], text: a[1] }),
        el('span', { text: `${p.displayName} ${keyName(k)}` })));
    }
  }
  const n = list.childElementCount;
  $('attention-title').textContent = n ? `Needs attention (${n})` : 'Needs attention';
  if (!n) list.append(el('li', { class: 'none', text: 'Nothing: every key is healthy, in date and in use.' }));
}

// Usage: what the page knows of the last 7 days, by day: the
// resolutions of the scope's keys (GET .../usage of each key, from the
// counters every replica keeps) and, for a workspace, its calls through
// the credential proxy (from its records).
let usageDays = null; // [{ day, resolves, calls }] for the last 7 days, or null
let usageNote = ''; // what the chart cannot show
function renderUsageFigures() {
  const all = Object.values(pools).flat();
  const resolves = all.reduce((n, k) => n + (k.resolves || 0), 0);
  const used = all.filter((k) => k.lastUsedAt && Date.now() - Date.parse(k.lastUsedAt) < 7 * day).length;
  const figures = el('div', { class: 'figures' },
    el('div', { 'data-figure': 'resolves' }, el('strong', { text: String(resolves) }), 'served by these keys'),
    el('div', { 'data-figure': 'used' }, el('strong', { text: `${used} of ${all.length}` }), 'keys used this week'));
  const box = $('usage');
  box.replaceChildren(figures);
  if (usageDays && usageDays.some((d) => d.resolves || d.calls)) box.append(usageChart(usageDays));
  else if (usageDays) {
    box.append(el('p', { class: 'small', 'data-usage-chart': '', text: `No resolution${usageDays[0].withCalls ? ' and no call through the proxy' : ''} in the last 7 days.` }));
  }
  if (usageNote) box.append(el('p', { class: 'hint small', text: usageNote }));
}

// sevenDays is the first day (00:00 UTC) of the last 7.
function sevenDays() {
  const start = new Date(Date.now() - 6 * day);
  start.setUTCHours(0, 0, 0, 0);
  return start;
}

// renderUsage reads the resolutions of every key of the scope and the
// workspace's proxied calls (one page of up to 1,000) of the last 7 days,
// and counts them by day.
async function renderUsage() {
  usageDays = null;
  usageNote = '';
  const start = sevenDays();
  const days = [...Array(7)].map((_, i) => ({ day: new Date(start.getTime() + i * day), resolves: 0, calls: 0, more: false }));
  const at = (iso) => days[Math.floor((Date.parse(iso) - start.getTime()) / day)];
  const keys = [];
  for (const p of providers) for (const k of pools[p.id] || []) keys.push([p, k]);
  const since = start.toISOString().slice(0, 10);
  const counted = await Promise.all(keys.map(([p, k]) => api('GET', `${keyPath(p.id, k.keyId)}/usage?since=${since}`).catch(() => null)));
  let known = keys.length === 0 || counted.some(Boolean);
  for (const u of counted.filter(Boolean)) {
    for (const v of u.versions) for (const d of v.days) { const slot = at(d.day + 'T00:00:00Z'); if (slot) slot.resolves += d.resolves; }
  }
  let calls = false;
  if (current.kind === 'workspace') {
    try {
      const page = await api('GET', `${base()}/proxy-calls?${new URLSearchParams({ limit: '1000', since: start.toISOString().replace(/\.\d+Z$/, 'Z') })}`);
      for (const c of page.calls) { const slot = at(c.at); if (slot) slot.calls++; }
      days.forEach((d) => { d.more = Boolean(page.nextCursor); });
      calls = true;
    } catch (e) {
      if (e.status !== 403 && e.status !== 404) throw e;
      usageNote = "Calls through the proxy come from the credential proxy's records, which this replica does not keep.";
    }
  } else {
    usageNote = "The organization's keys' resolutions; calls through the proxy are its workspaces'.";
  }
  if (!known) usageNote = 'Resolutions by day are not available here.';
  known = known || calls;
  if (known) usageDays = days.map((d) => ({ ...d, withCalls: calls }));
  renderUsageFigures();
}

// usageChart draws the resolutions and the proxied calls by day as
// stacked bars (SVG), labelled for screen readers in words.
function usageChart(days) {
  const ns = 'http://www.w3.org/2000/svg';
  const svg = (tag, attrs) => { const n = document.createElementNS(ns, tag); for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, v); return n; };
  const max = Math.max(1, ...days.map((d) => d.resolves + d.calls));
  const names = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const resolves = days.reduce((n, d) => n + d.resolves, 0), calls = days.reduce((n, d) => n + d.calls, 0);
  const withCalls = days[0].withCalls;
  const words = days.map((d) => `${names[d.day.getUTCDay()]} ${d.resolves}${withCalls ? ' and ' + d.calls : ''}`).join(', ');
  const chart = svg('svg', { class: 'chart', viewBox: '0 0 280 72', role: 'img',
    'aria-label': `${withCalls ? 'Resolutions and calls through the proxy' : 'Resolutions'} by day: ${words}` });
  days.forEach((d, i) => {
    const total = d.resolves + d.calls;
    const h = Math.max(2, Math.round((total / max) * 50));
    const hc = total ? Math.round((d.calls / total) * h) : 0;
    if (!total) chart.append(svg('rect', { class: 'bar zero', x: String(i * 40 + 6), y: String(56 - h), width: '28', height: String(h), rx: '3' }));
    if (h - hc > 0 && total) chart.append(svg('rect', { class: 'bar res', x: String(i * 40 + 6), y: String(56 - h), width: '28', height: String(h - hc), rx: '3' }));
    if (hc > 0) chart.append(svg('rect', { class: 'bar', x: String(i * 40 + 6), y: String(56 - hc), width: '28', height: String(hc), rx: '3' }));
    const label = svg('text', { x: String(i * 40 + 20), y: '70', 'text-anchor': 'middle' });
    label.textContent = names[d.day.getUTCDay()];
    chart.append(label);
  });
  const legend = el('p', { class: 'small hint legend' }, el('span', { class: 'swatch res', 'aria-hidden': 'true' }), `${plural(resolves, 'resolution')}`);
  if (withCalls) legend.append(' ', el('span', { class: 'swatch', 'aria-hidden': 'true' }), `${plural(calls, 'call')} through the proxy${days[0].more ? ' (at least)' : ''}`);
  return el('div', { 'data-usage-chart': '' }, legend, chart);
}

// providerSection is one provider's pool: its name, what serves it, its
// keys as a table in the order they serve, and Add a key.
function providerSection(p, pool) {
  const edit = canEdit();
  const head = el('div', { class: 'provider-head' },
    el('h3', { id: 'prov-' + p.id, text: p.displayName }),
    el('span', { class: 'count', text: `${plural(pool.length, 'key')} of 10` }));
  if (edit && pool.length < 10) {
    head.append(el('button', { type: 'button', class: 'small-btn', 'data-add': p.id, 'aria-label': `Add a key to ${p.displayName}`,
      onclick: () => openAddPanel(p, `button[data-add="${p.id}"]`) }, 'Add a key'));
  }
  const headRow = el('tr', {});
  if (edit) headRow.append(el('th', { scope: 'col', class: 'c-handle' }, el('span', { class: 'visually-hidden', text: 'Order' })));
  for (const [c, text] of [['c-name', 'Name'], ['c-key', 'Key'], ['c-state', 'State'], ['c-prio', 'Priority'], ['c-used', 'Last used'], ['c-exp', 'Expires']]) {
    headRow.append(el('th', { scope: 'col', class: c, text }));
  }
  if (edit) headRow.append(el('th', { scope: 'col', class: 'c-menu' }, el('span', { class: 'visually-hidden', text: 'Actions' })));
  const body = el('tbody', {});
  pool.forEach((k, j) => body.append(keyRow(p, k, pool, j)));
  const table = el('table', { class: 'keys', 'data-pool': p.id },
    el('caption', { class: 'visually-hidden', text: `${p.displayName} keys, in the order they serve` }), el('thead', {}, headRow), body);
  return el('section', { class: 'provider', 'data-provider': p.id, 'aria-labelledby': 'prov-' + p.id }, head, table);
}

// adminSection lists the scope's admin credentials (rotation and
// revocation at the provider): never resolved nor served, so no order, no
// test, no rotation; each row has its menu only.
function adminSection(admins) {
  const edit = canEdit();
  const headRow = el('tr', {});
  for (const [c, text] of [['c-name', 'Name'], ['c-key', 'Credential'], ['c-state', 'State'], ['c-used', 'Manages'], ['c-exp', 'Expires']]) {
    headRow.append(el('th', { scope: 'col', class: c, text }));
  }
  if (edit) headRow.append(el('th', { scope: 'col', class: 'c-menu' }, el('span', { class: 'visually-hidden', text: 'Actions' })));
  const body = el('tbody', {});
  for (const a of admins) for (const k of adminPools[a.id]) body.append(adminRow(a, k));
  return el('section', { class: 'provider', 'data-admin-credentials': '', 'aria-labelledby': 'admin-creds-title' },
    el('div', { class: 'provider-head' }, el('h3', { id: 'admin-creds-title', text: 'Admin credentials for rotation' }),
      el('span', { class: 'count', text: 'never resolved, never served to calls' })),
    el('table', { class: 'keys' }, el('caption', { class: 'visually-hidden', text: 'Admin credentials' }), el('thead', {}, headRow), body));
}

function adminRow(a, k) {
  const id = `${a.id}/${k.keyId}`, slug = `${a.id}-${k.keyId}`;
  const exp = expiryBadge(k);
  const of = providerName(a.adminOf);
  const row = el('tr', { 'data-key': id, 'data-admin-key': id, class: k.state === 'disabled' ? 'disabled' : undefined },
    el('td', { class: 'c-name' }, el('span', { class: 'kname', 'data-name': id, text: k.name || k.keyId }),
      el('span', { class: 'sub', text: `${a.displayName}, version ${k.version}, changed by ${actorLabel(k.updatedBy, k.updatedByName)} at ${when(k.updatedAt)}` }),
      el('p', { class: 'error', id: 'err-' + slug, role: 'alert' })),
    el('td', { class: 'c-key' }, credentialSummary(a, k, id)),
    el('td', { class: 'c-state' }, el('span', { class: 'badge ' + k.state, 'data-state': id, text: k.state })),
    el('td', { class: 'c-used' }, el('span', { class: 'cell-label', text: 'manages ' }), `${of} keys`),
    el('td', { class: k.expiresAt ? 'c-exp' : 'c-exp none' }, el('span', { class: 'cell-label', text: 'expires ' }),
      k.expiresAt ? el('span', { class: exp ? 'badge ' + exp[0] : '', 'data-expires': id, title: when(k.expiresAt), text: exp ? exp[1] : when(k.expiresAt).slice(0, 10) })
        : el('span', { class: 'hint', 'data-expires': id, text: 'no expiry' })));
  if (canEdit()) row.append(el('td', { class: 'c-menu' }, adminActions(a, k)));
  return row;
}

// adminActions is an admin credential's menu: replace, rename, expiry,
// disable or enable, history, delete; nothing that resolves.
function adminActions(a, k) {
  const id = `${a.id}/${k.keyId}`, slug = `${a.id}-${k.keyId}`;
  const err = () => document.getElementById('err-' + slug) || el('p');
  const back = `button[data-menu="${CSS.escape(id)}"]`;
  const of = providerName(a.adminOf);
  const enabling = k.state !== 'active';
  const toggle = keyAction(el('p', { id: 'err-' + slug }), async () => {
    const ok = await confirmAction(enabling
      ? { title: `Enable ${keyName(k)}?`, ok: 'Enable', text: `keybroker can use ${keyName(k)} again to rotate and revoke ${of} keys at ${of}.` }
      : { title: `Disable ${keyName(k)}?`, ok: 'Disable', danger: true, text: `keybroker stops using ${keyName(k)}: rotations and revocations at ${of} ` +
        'use another active admin credential of the pool, or wait (a revocation is retried) until there is one.' });
    if (!ok) return false;
    return api('PATCH', keyPath(a.id, k.keyId), { state: enabling ? 'active' : 'disabled' });
  }, `${enabling ? 'Enabled' : 'Disabled'} ${a.displayName} credential ${keyName(k)}.`);
  const del = keyAction(el('p', { id: 'err-' + slug }), async () => {
    const destroy = el('input', { type: 'checkbox', id: `destroy-${slug}`, 'data-destroy': id });
    const ok = await confirmAction({ title: `Delete ${a.displayName} credential ${keyName(k)}?`, ok: 'Delete the credential', danger: true,
      extra: el('label', { for: `destroy-${slug}` }, destroy, ' Also destroy every earlier version in Vault, for good'),
      text: `Nothing that resolves changes. Without an admin credential keybroker cannot rotate or revoke ${of} keys at ${of}; ` +
        'a revocation waiting for it is retried until one is added. The credential stays valid at the provider: revoke it there if it leaked.' });
    if (!ok) return false;
    await api('DELETE', keyPath(a.id, k.keyId) + (destroy.checked ? '?destroy=true' : ''));
    return true;
  }, `Deleted ${a.displayName} credential ${keyName(k)}.`);
  return actionsMenu(id, keyName(k), [
    { text: 'Replace the credential…', attrs: { 'data-replace': id }, run: () => openPanel(`Replace ${a.displayName} credential ${keyName(k)}`, back, rotateForm(a, k)) },
    { text: 'Rename…', attrs: { 'data-rename-open': id }, run: () => openPanel(`Rename ${a.displayName} credential ${keyName(k)}`, back, renameForm(a, k)) },
    { text: 'Expiry…', attrs: { 'data-expiry-open': id }, run: () => openPanel(`Expiry of ${a.displayName} credential ${keyName(k)}`, back, expiryForm(a, k)) },
    { text: enabling ? 'Enable' : 'Disable', attrs: { 'data-toggle-state': id }, run: toggle },
    { text: 'Version history…', attrs: { 'data-history': id }, run: () => renderHistory(a, k).catch((e) => { err().textContent = e.message; }) },
    '-',
    { text: 'Delete…', attrs: { 'data-delete': id }, danger: true, run: del },
  ]);
}

// relative says how long ago in words (minutes, hours, days).
function relative(iso) {
  const s = (Date.now() - Date.parse(iso)) / 1000;
  if (s < 90) return 'just now';
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 129600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

// keyRow is one key of a pool: what it is, how it serves, and (for
// admins) its drag handle and its actions menu: at most 3 controls.
function keyRow(p, k, pool, j) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const edit = canEdit();
  const row = el('tr', { 'data-key': id, class: k.state === 'disabled' ? 'disabled' : undefined });
  const usage = k.lastUsedAt
    ? `served ${plural(k.resolves, 'time')}, last ${when(k.lastUsedAt)}${k.idle ? ' (idle: unused for 90 days)' : ''}`
    : `never used${k.idle ? ' (idle: added over 90 days ago)' : ''}`;
  const exp = expiryBadge(k);
  if (edit) row.append(el('td', { class: 'c-handle' }, dragHandle(p, k, pool, j, row)));
  row.append(
    el('td', { class: 'c-name' }, el('span', { class: 'kname', 'data-name': id, text: k.name || k.keyId }),
      el('span', { class: 'sub', 'data-changed': id, text: `version ${k.version}, changed by ${actorLabel(k.updatedBy, k.updatedByName)} at ${when(k.updatedAt)}` }),
      el('p', { class: 'error', id: 'err-' + slug, role: 'alert' })),
    el('td', { class: 'c-key' }, el('span', { class: 'masked', 'data-masked': id, text: k.maskedKey }),
      el('span', { class: 'sub', text: `key id ${k.keyId}${k.models.length ? ', only for ' + k.models.join(', ') : ''}` }), credentialSummary(p, k, id)),
    el('td', { class: 'c-state' }, el('span', { class: 'badge ' + k.state, 'data-state': id, text: k.state }), ' ',
      el('span', { class: 'badge wrap ' + (k.health || 'healthy'), 'data-health': id, text: healthInWords(k) }),
      el('p', { class: 'result', 'data-test-result': id, role: 'status' })),
    el('td', { class: 'c-prio' }, el('span', { class: 'cell-label', text: 'priority ' }), String(k.priority)),
    el('td', { class: 'c-used', 'data-usage': id, title: usage }, el('span', { class: 'cell-label', text: 'last used ' }),
      k.lastUsedAt ? relative(k.lastUsedAt) : 'never', el('span', { class: 'sub', text: k.lastUsedAt ? `served ${plural(k.resolves, 'time')}` : '' })),
    el('td', { class: k.expiresAt ? 'c-exp' : 'c-exp none' }, el('span', { class: 'cell-label', text: 'expires ' }),
      k.expiresAt ? el('span', { class: exp ? 'badge ' + exp[0] : '', 'data-expires': id, 'data-expiry': k.expiry || undefined, title: when(k.expiresAt),
        text: exp ? exp[1] : when(k.expiresAt).slice(0, 10) })
        : el('span', { class: 'hint', 'data-expires': id, text: 'no expiry' })));
  if (edit) row.append(el('td', { class: 'c-menu' }, keyActions(p, k, pool, j)));
  return row;
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
      // A form in the side panel has done its work: the panel closes, and
      // the focus goes back to what opened it once the page is redrawn.
      const back = panelReturn;
      panelReturn = '';
      closePanel();
      await refresh();
      if (back && !$('panel').open) document.querySelector(back)?.focus();
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
  const clearMarks = () => item.parentElement?.querySelectorAll('tr').forEach((tr) => tr.classList.remove('drop-before', 'drop-after', 'dragging'));
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
    const others = [...item.parentElement.children].filter((tr) => tr !== item);
    target = others.filter((tr) => { const r = tr.getBoundingClientRect(); return ev.clientY > r.top + r.height / 2; }).length;
    others.forEach((tr) => tr.classList.remove('drop-before', 'drop-after'));
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

// keyActions is a key's menu: replace, rename, limit models, serve
// earlier or later, disable or enable, test, history, delete. The forms
// open in the side panel; what changes what serves asks first.
function keyActions(p, k, pool, j) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const err = () => document.getElementById('err-' + slug) || el('p');
  const back = `button[data-menu="${CSS.escape(id)}"]`;
  const enabling = k.state !== 'active';
  const toggle = keyAction(el('p', { id: 'err-' + slug }), async () => {
    const q = enabling
      ? { title: `Enable ${keyName(k)}?`, ok: 'Enable', text: `${keyName(k)} serves ${p.displayName} calls again, at priority ${k.priority}.` }
      : { title: `Disable ${keyName(k)}?`, ok: 'Disable', danger: true, text: `${keyName(k)} stops serving at once. ${nextSource(p, pool, [k.keyId])}` };
    if (!await confirmAction(q)) return false;
    return api('PATCH', keyPath(p.id, k.keyId), { state: enabling ? 'active' : 'disabled' });
  }, `${enabling ? 'Enabled' : 'Disabled'} ${p.displayName} key ${keyName(k)}.`);
  // Delete, with a confirmation that says what it leaves behind.
  // Delete, with a confirmation that says where the key was used, what it
  // leaves behind, and (where keybroker can) offers to revoke it at the
  // provider too.
  const del = keyAction(el('p', { id: 'err-' + slug }), async () => {
    const destroy = el('input', { type: 'checkbox', id: `destroy-${slug}`, 'data-destroy': id });
    const extra = el('div', { class: 'confirm-extra' }, await usageBlock(p, k),
      el('label', { for: `destroy-${slug}` }, destroy, ' Also destroy every earlier version in Vault, for good'));
    const why = revocationBlocked(p, k);
    const revoke = why ? null : el('input', { type: 'checkbox', id: `revoke-${slug}`, 'data-revoke': id });
    if (revoke) {
      extra.append(el('label', { for: `revoke-${slug}` }, revoke, ` Revoke everywhere: also ${p.revocation === 'deactivate' ? 'deactivate' : 'delete'} the key at ` +
        `${p.displayName} (id ${k.providerKeyId}), so no copy of it works anywhere`));
    } else {
      extra.append(el('p', { class: 'hint small', 'data-revoke-why': id, text: why }));
    }
    const ok = await confirmAction({ title: `Delete ${p.displayName} key ${keyName(k)}?`, ok: 'Delete the key', danger: true, extra,
      text: `${k.state === 'active' ? nextSource(p, pool, [k.keyId]) : 'The key is disabled: nothing serves differently.'} ` +
        'A plain delete removes the current version only: the older versions stay in Vault, readable and restorable by its operators. Destroy removes them all.' });
    if (!ok) return false;
    const q = new URLSearchParams();
    if (destroy.checked) q.set('destroy', 'true');
    if (revoke && revoke.checked) q.set('revokeAtProvider', 'true');
    const r = await api('DELETE', keyPath(p.id, k.keyId) + (q.size ? '?' + q : ''));
    return { destroyed: destroy.checked, revocation: r };
  }, ({ destroyed, revocation }) => `Deleted ${p.displayName} key ${keyName(k)}${destroyed ? ', every version destroyed' : '; its older versions stay in Vault'}.` +
    (revocation ? ' ' + revocationWords(p, revocation) : ''));
  const test = async () => {
    const verdict = () => document.querySelector(`[data-test-result="${CSS.escape(id)}"]`);
    err().textContent = '';
    verdict().textContent = `Asking ${p.displayName}...`;
    try {
      const r = await api('POST', `${keyPath(p.id, k.keyId)}/test`);
      const words = { accepted: 'accepted the key', refused: 'refused the key', rate_limited: 'knows the key but rate limits it', unreachable: 'could not be asked' };
      const text = `${p.displayName} ${words[r.result] || r.result} (${r.detail}); the key is ${r.health.replace('_', ' ')}.`;
      await renderKeys();
      verdict().textContent = text;
      await renderAudit();
      toast(text, r.result !== 'accepted');
    } catch (e) {
      if (verdict()) verdict().textContent = '';
      err().textContent = e.message;
    }
  };
  return actionsMenu(id, keyName(k), [
    { text: 'Replace the key…', attrs: { 'data-replace': id }, run: () => openPanel(`Replace ${p.displayName} key ${keyName(k)}`, back, rotateForm(p, k)) },
    { text: 'Rename…', attrs: { 'data-rename-open': id }, run: () => openPanel(`Rename ${p.displayName} key ${keyName(k)}`, back, renameForm(p, k)) },
    { text: 'Limit to models…', attrs: { 'data-models-open': id }, run: () => openPanel(`Models of ${p.displayName} key ${keyName(k)}`, back, modelsForm(p, k)) },
    { text: 'Serve earlier', attrs: { 'data-up': id }, disabled: j === 0, run: () => keyAction(err(), () => reorder(p, pool, j, j - 1), (m) => m)() },
    { text: 'Serve later', attrs: { 'data-down': id }, disabled: j === pool.length - 1, run: () => keyAction(err(), () => reorder(p, pool, j, j + 1), (m) => m)() },
    { text: enabling ? 'Enable' : 'Disable', attrs: { 'data-toggle-state': id }, run: toggle },
    { text: 'Expiry and provider id…', attrs: { 'data-expiry-open': id }, run: () => openPanel(`Expiry of ${p.displayName} key ${keyName(k)}`, back, expiryForm(p, k)) },
    { text: 'Rotate at the provider…', attrs: { 'data-rotate-open': id }, run: () => openRotation(p, k).catch((e) => { err().textContent = e.message; }) },
    { text: 'Test with the provider', attrs: { 'data-test': id }, run: test },
    { text: 'Version history…', attrs: { 'data-history': id }, run: () => renderHistory(p, k).catch((e) => { err().textContent = e.message; }) },
    '-',
    { text: 'Delete…', attrs: { 'data-delete': id }, danger: true, run: del },
  ]);
}

// rotateForm writes a new value for a key (a whole new credential, for
// the kinds of several fields: the public fields filled in, every secret
// field of the chosen way asked again).
function rotateForm(p, k) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const err = el('p', { class: 'error', id: 'rotate-err-' + slug, role: 'alert' });
  const confirmRotate = () => confirmAction({ title: `Replace ${p.displayName} key ${keyName(k)}?`, ok: 'Replace the key',
    text: (p.adminOf ? `keybroker uses the new value to manage ${providerName(p.adminOf)} keys from now on. `
      : k.state === 'active' ? 'Calls this key serves use the new value at once. ' : 'The key is disabled: the new value serves once it is enabled. ') +
      `The current value stays in Vault as version ${k.version}, so it can be rolled back.` });
  const rotated = (r) => `Replaced ${p.displayName} key ${keyName(k)}: now version ${r.version} (${r.maskedKey}).`;
  const form = el('form', { 'data-rotate': id, method: 'post' });
  if (p.kind === 'api_key') {
    const input = el('input', { id: 'rotate-' + slug, type: 'password', autocomplete: 'off', spellcheck: 'false', 'aria-describedby': 'rotate-err-' + slug });
    form.append(el('p', { class: 'hint', text: `Now ${k.maskedKey}, version ${k.version}.` }),
      el('label', { for: 'rotate-' + slug, text: `New value of ${k.name || k.keyId}` }), input,
      el('p', { class: 'hint', text: p.formatHint }), err,
      el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Replace key' })));
    form.addEventListener('submit', (ev) => {
      ev.preventDefault();
      keyAction(err, async () => {
        if (!await confirmRotate()) return false;
        const value = input.value;
        input.value = ''; // the key leaves the DOM before the request returns
        return api('PUT', keyPath(p.id, k.keyId), { apiKey: value });
      }, rotated)();
    });
    return form;
  }
  const cred = credentialForm(p, 'rotate-' + slug, k);
  form.append(el('p', { class: 'hint', text: 'A replacement writes the whole credential: the public fields are filled in from the current one; ' +
      'keybroker never shows a secret field, so each one the chosen way needs is asked again (type the same value to keep it).' }),
  cred.node, err, el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Replace credential' })));
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
  return form;
}

// renameForm changes a key's name (nothing that resolves: no confirmation).
function renameForm(p, k) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const input = el('input', { id: 'name-' + slug, autocomplete: 'off', value: k.name, maxlength: '120', 'aria-describedby': 'rename-err-' + slug });
  const err = el('p', { class: 'error', id: 'rename-err-' + slug, role: 'alert' });
  const form = el('form', { 'data-rename': id, method: 'post' }, el('label', { for: 'name-' + slug, text: 'Name' }), input, err,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Rename' })));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    keyAction(err, () => api('PATCH', keyPath(p.id, k.keyId), { name: input.value }), `Renamed to '${input.value}'.`)();
  });
  return form;
}

// modelsForm limits a key to some models (it then serves only those; an
// empty list: every model). It changes what serves, so it asks first.
function modelsForm(p, k) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const input = el('input', { id: 'models-' + slug, autocomplete: 'off', spellcheck: 'false', value: k.models.join(', '), 'aria-describedby': `models-hint-${slug} models-err-${slug}` });
  const err = el('p', { class: 'error', id: 'models-err-' + slug, role: 'alert' });
  const form = el('form', { 'data-models': id, method: 'post' }, el('label', { for: 'models-' + slug, text: 'Models (comma separated)' }), input,
    el('p', { class: 'hint', id: 'models-hint-' + slug, text: 'The key serves only calls for these models; empty: every model.' }), err,
    el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Save' })));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const models = splitIds(input.value);
    keyAction(err, async () => {
      const ok = await confirmAction({ title: `Limit ${keyName(k)} to ${models.length ? plural(models.length, 'model') : 'no model'}?`, ok: 'Save',
        text: models.length ? `${keyName(k)} serves only ${models.join(', ')} from now on; calls for other models use the pool's next key.` : `${keyName(k)} serves every model again.` });
      if (!ok) return false;
      return api('PATCH', keyPath(p.id, k.keyId), { models });
    }, models.length ? `${keyName(k)} now serves only ${models.join(', ')}.` : `${keyName(k)} now serves every model.`)();
  });
  return form;
}

// ---- The key lifecycle: expiry, usage, rotation and revocation at the provider --

// adminOf is the admin provider (GET /v1/providers' adminProviders) that
// manages p's keys at the provider, and the scope's credential of it that
// keybroker would use (the first active one in date), if any.
function adminOf(p) {
  const a = adminProviders.find((x) => x.adminOf === p.id);
  const cred = a && (adminPools[a.id] || []).find((k) => k.state === 'active' && k.expiry !== 'expired');
  return { admin: a || null, cred: cred || null };
}

// rotationBlocked says why keybroker cannot rotate p's keys at the
// provider here ('' when it can).
function rotationBlocked(p) {
  if (p.rotation !== 'admin_api') {
    return `${p.displayName}'s API cannot create keys, so keybroker cannot rotate its keys at the provider. Replace the key by hand ` +
      '(Replace the key…) and give it an expiry to be warned before it ends.' +
      (p.revocation ? ` keybroker can revoke ${p.displayName} keys there (Delete…, Revoke everywhere).` : '');
  }
  const { admin, cred } = adminOf(p);
  if (!cred) {
    return `keybroker rotates ${p.displayName} keys with the ${current.kind}'s ${admin ? admin.displayName : p.displayName + ' admin'} credential, ` +
      `and this ${current.kind} holds no usable one. Add it under Add a provider, Admin credentials for rotation.`;
  }
  return '';
}

// revocationBlocked says why a key cannot be revoked at its provider
// ('' when it can).
function revocationBlocked(p, k) {
  if (!p.revocation) return `keybroker cannot revoke ${p.displayName} keys at the provider: revoke it in ${p.displayName}'s console too.`;
  const { admin, cred } = adminOf(p);
  if (!cred) return `Revoking it at ${p.displayName} needs the ${current.kind}'s ${admin ? admin.displayName : ''} credential (Add a provider, Admin credentials for rotation).`;
  if (!k.providerKeyId) return `Revoking it at ${p.displayName} needs the key's id there, which keybroker does not know (Expiry and provider id…).`;
  return '';
}

const durationWords = (v) => { const m = /^(\d+)([dh])$/.exec(v || ''); return m ? plural(Number(m[1]), m[2] === 'd' ? 'day' : 'hour') : v; };

// usageBlock reads where a key was used in the last 7 days (GET
// .../usage): resolutions and proxied calls by version and caller, as a
// small table; what a rotation or a revocation will touch.
async function usageBlock(p, k) {
  const id = `${p.id}/${k.keyId}`;
  const box = el('div', { class: 'key-usage', 'data-key-usage': id });
  let u;
  try {
    u = await api('GET', `${keyPath(p.id, k.keyId)}/usage?since=${sevenDays().toISOString().slice(0, 10)}`);
  } catch (e) {
    box.append(el('p', { class: 'hint small', text: `Where the key is used could not be read: ${e.message}` }));
    return box;
  }
  const rows = new Map(); // version/caller → totals
  for (const v of u.versions) {
    for (const d of v.days) {
      const key = `${v.version}\u0000${d.caller}`;
      const r = rows.get(key) || { version: v.version, caller: d.caller, resolves: 0, calls: 0 };
      r.resolves += d.resolves;
      r.calls += d.proxiedCalls;
      rows.set(key, r);
    }
  }
  const list = [...rows.values()].filter((r) => r.resolves || r.calls);
  const resolves = list.reduce((n, r) => n + r.resolves, 0), calls = list.reduce((n, r) => n + r.calls, 0);
  const callers = new Set(list.map((r) => r.caller)).size;
  if (!list.length) {
    box.append(el('p', { class: 'small', text: 'Last 7 days: not used (no resolution, no call through the proxy).' }));
    return box;
  }
  box.append(el('p', { class: 'small', text: `Last 7 days: ${plural(resolves, 'resolution')} and ${plural(calls, 'call')} through the proxy, ` +
    `by ${plural(callers, 'caller')}. They will need the key that serves next.` }));
  const body = el('tbody', {});
  for (const r of list) {
    body.append(el('tr', {}, el('td', { text: String(r.version) }), el('td', { class: 'caller', text: r.caller || '-' }),
      el('td', { text: String(r.resolves) }), el('td', { text: String(r.calls) })));
  }
  box.append(el('div', { class: 'scroll' }, el('table', { class: 'data mini' },
    el('caption', { class: 'visually-hidden', text: `Where ${keyName(k)} was used in the last 7 days, by version and caller` }),
    el('thead', {}, el('tr', {}, ...['Version', 'Caller', 'Resolutions', 'Proxied calls'].map((h) => el('th', { scope: 'col', text: h })))), body)));
  return box;
}

// expiryForm sets or removes a key's expiry (expiresAt: a day, from 00:00
// UTC) and its id at the provider (providerKeyId: rotation and revocation
// there need it), with PATCH. An expiry in the past stops the key at
// once, so it asks first.
function expiryForm(p, k) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const date = el('input', { id: 'expires-' + slug, type: 'date', value: k.expiresAt ? k.expiresAt.slice(0, 10) : '',
    'aria-describedby': `expires-hint-${slug} expiry-err-${slug}` });
  const err = el('p', { class: 'error', id: 'expiry-err-' + slug, role: 'alert' });
  const badge = expiryBadge(k);
  const form = el('form', { 'data-expiry': id, method: 'post' },
    el('p', { class: 'hint', 'data-expiry-now': id, text: k.expiresAt ? `Now: ${badge ? badge[1] : 'expires ' + when(k.expiresAt)}.` : 'Now: no expiry.' }),
    el('label', { for: 'expires-' + slug, text: 'Expires on (from 00:00 UTC)' }), date,
    el('p', { class: 'hint', id: 'expires-hint-' + slug, text: "From then the key is not served (the pool's next key serves); " +
      'in the days before, it shows as expiring and keybroker sends warnings. Empty: no expiry.' }));
  let pid = null;
  if (!p.adminOf) {
    pid = el('input', { id: 'pkid-' + slug, autocomplete: 'off', spellcheck: 'false', value: k.providerKeyId || '', maxlength: '200', 'aria-describedby': 'pkid-hint-' + slug });
    form.append(el('label', { for: 'pkid-' + slug, text: `Id of the key at ${p.displayName} (optional)` }), pid,
      el('p', { class: 'hint', id: 'pkid-hint-' + slug, text: p.revocation
        ? `Revoking the key at ${p.displayName}, and deleting it there after a rotation, need it (an OpenAI service account id, an Anthropic API key id).`
        : `keybroker does not rotate or revoke ${p.displayName} keys at the provider; the id is kept for your records.` }));
  }
  const clear = el('button', { type: 'button', 'data-expiry-clear': id, hidden: !k.expiresAt, text: 'Remove the expiry' });
  form.append(err, el('div', { class: 'actions' }, clear, el('button', { type: 'submit', class: 'primary', text: 'Save' })));
  const write = (expiresAt) => keyAction(err, async () => {
    const body = {};
    if (expiresAt !== (k.expiresAt ? k.expiresAt.slice(0, 10) : '')) body.expiresAt = expiresAt ? expiresAt + 'T00:00:00Z' : '';
    if (pid && pid.value.trim() !== (k.providerKeyId || '')) body.providerKeyId = pid.value.trim();
    if (!Object.keys(body).length) throw new Error('Nothing changed.');
    if (body.expiresAt && Date.parse(body.expiresAt) <= Date.now() && k.state === 'active') {
      const ok = await confirmAction({ title: `Let ${keyName(k)} expire on ${expiresAt}?`, ok: 'Set the expiry', danger: true,
        text: `The date is past: ${keyName(k)} stops serving at once. ${p.adminOf ? '' : nextSource(p, pools[p.id] || [], [k.keyId])}` });
      if (!ok) return false;
    }
    return api('PATCH', keyPath(p.id, k.keyId), body);
  }, (r) => `${p.displayName} key ${keyName(k)}: ` + (r.expiresAt ? `expires ${when(r.expiresAt)}` : 'no expiry') +
    (r.providerKeyId ? `, id at ${p.displayName} ${r.providerKeyId}.` : '.'))();
  form.addEventListener('submit', (ev) => { ev.preventDefault(); write(date.value); });
  clear.addEventListener('click', () => write(''));
  return form;
}

// openRotation is "Rotate at the provider": where keybroker can (the
// provider's admin API creates keys and the scope holds its admin
// credential), the key's usage of the last 7 days, a grace period and the
// rotation; else why not.
async function openRotation(p, k) {
  const id = `${p.id}/${k.keyId}`, slug = `${p.id}-${k.keyId}`;
  const back = `button[data-menu="${CSS.escape(id)}"]`;
  const title = `Rotate ${p.displayName} key ${keyName(k)} at the provider`;
  const why = rotationBlocked(p);
  if (why) {
    const nodes = [el('p', { 'data-rotate-why': id, text: why })];
    const { admin } = adminOf(p);
    if (admin && p.rotation === 'admin_api' && canEdit()) {
      nodes.push(el('div', { class: 'actions' }, el('button', { type: 'button', class: 'primary', 'data-add-admin': admin.id,
        onclick: () => openAddPanel(admin, back), text: `Add the ${admin.displayName} credential…` })));
    }
    openPanel(title, back, ...nodes);
    return;
  }
  const { cred } = adminOf(p);
  const usage = await usageBlock(p, k);
  const grace = el('input', { id: 'grace-' + slug, type: 'number', min: '0', max: '10080', inputmode: 'numeric', placeholder: '60',
    'aria-describedby': 'grace-hint-' + slug });
  const err = el('p', { class: 'error', id: 'rotation-err-' + slug, role: 'alert' });
  const form = el('form', { 'data-rotation': id, method: 'post' },
    el('p', { class: 'small', text: `keybroker creates a new key at ${p.displayName} with the admin credential ${keyName(cred)}, checks that ` +
      `${p.displayName} accepts it, puts it in the pool at priority ${k.priority}, disables ${keyName(k)}, and deletes ${keyName(k)} at ` +
      `${p.displayName} and from the pool after the grace period. If ${p.displayName} does not accept the new key, nothing changes.` }),
    k.providerKeyId ? '' : el('p', { class: 'warning small', 'data-rotate-warning': id, text: `keybroker does not know this key's id at ${p.displayName}: ` +
      'the old key cannot be deleted there after the grace period (set it first: Expiry and provider id…).' }),
    el('h3', { class: 'panel-sub', text: 'Where the key is used' }), usage,
    el('label', { for: 'grace-' + slug, text: 'Grace period, in minutes' }), grace,
    el('p', { class: 'hint', id: 'grace-hint-' + slug, text: 'How long the old key keeps working at the provider once the new one serves, ' +
      "so calls in flight finish. Empty: keybroker's default (1 hour unless its operators set another); 0: delete it at once." }),
    err, el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Rotate the key' })));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    keyAction(err, async () => {
      const body = {};
      if (grace.value !== '') {
        const m = Number(grace.value);
        if (!Number.isInteger(m) || m < 0 || m > 10080) throw new Error('The grace period is a whole number of minutes, from 0 to 10080 (7 days).');
        body.graceSeconds = m * 60;
      }
      const ok = await confirmAction({ title: `Rotate ${keyName(k)} at ${p.displayName}?`, ok: 'Rotate', danger: true,
        text: `A new key serves ${p.displayName} calls in place of ${keyName(k)}, which stops serving at once and is deleted at ${p.displayName} ` +
          (body.graceSeconds === 0 ? 'right away.' : body.graceSeconds ? `after ${plural(body.graceSeconds / 60, 'minute')}.` : 'after the grace period.') });
      if (!ok) return false;
      try {
        return await api('POST', `${keyPath(p.id, k.keyId)}/rotate`, body);
      } catch (e) {
        if (e.status === 422) throw new Error(`The rotation rolled back: ${e.message}. ${keyName(k)} serves as before; no new key is left at ${p.displayName}.`);
        throw e;
      }
    }, (r) => rotationWords(p, k, r))();
  });
  openPanel(title, back, form);
}

// rotationWords says what a rotation did.
function rotationWords(p, k, r) {
  const later = r.state === 'done' ? `was deleted at ${p.displayName}` : r.deleteAfter
    ? `is deleted at ${p.displayName} and from the pool after ${when(r.deleteAfter)}` : `is deleted at ${p.displayName} after the grace period`;
  return `Rotated ${p.displayName} key ${keyName(k)}: the new key '${r.newKeyId}' serves now; ${keyName(k)} is disabled and ${later}.` +
    (r.error ? ` Note: ${r.error}` : '');
}

// rotationItem is one rotation of a key's history.
function rotationItem(p, r) {
  const state = { running: 'running', done: 'done', failed: 'failed', rolled_back: 'rolled back' }[r.state] || r.state;
  const step = { create: 'creating the new key', verify: 'checking the new key', store: 'storing the new key', disable_old: 'disabling the old key',
    grace: 'in its grace period', delete_old: 'deleting the old key', rollback: 'rolling back', done: 'done' }[r.step] || r.step;
  return el('li', { 'data-rotation': r.id },
    el('strong', { text: `Rotation ${r.id}` }), ` (${r.trigger === 'schedule' ? 'on schedule' : 'on demand'}, ${state}${r.state === 'running' ? ': ' + step : ''}) `,
    `by ${actorLabel(r.startedBy)}, `, el('span', { class: 'when', text: when(r.startedAt) }),
    el('span', { class: 'sub', text: `new key ${r.newKeyId}${r.newProviderKeyId ? ' (' + r.newProviderKeyId + ' at ' + p.displayName + ')' : ''}` +
      (r.deleteAfter && r.state === 'running' ? `; the old key is deleted after ${when(r.deleteAfter)}` : '') + (r.error ? `; ${r.error}` : '') }));
}

// revocationWords says what happened at the provider after a revoke
// everywhere: done, or pending or failed (the error, the next attempt).
function revocationWords(p, r) {
  const next = r.nextAttemptAt ? `; keybroker asks again at ${when(r.nextAttemptAt)}` : '';
  if (r.state === 'done') return `At ${p.displayName}: ${r.alreadyGone ? 'it was gone already' : r.action === 'deactivated' ? 'deactivated' : 'deleted'}.`;
  if (r.state === 'failed') return `At ${p.displayName}: refused (${r.lastError || 'the admin credential was refused'})${next}, until the admin credential is fixed.`;
  return `At ${p.displayName}: not yet (${r.lastError || 'the provider failed'})${next}.`;
}

// openAddPanel opens the add form of a provider in the side panel.
function openAddPanel(p, returnTo) {
  openPanel(p.adminOf ? `Add ${p.displayName} credential` : `Add a key to ${p.displayName}`, returnTo, addForm(p, pools[p.id] || adminPools[p.id] || []));
}

// openPicker is "Add a provider": the providers without a key of this
// scope, searched by name, each with the credential it takes and what
// serves its calls now; choosing one opens its form.
function openPicker() {
  const search = el('input', { id: 'provider-search', type: 'search', autocomplete: 'off', spellcheck: 'false', placeholder: 'Type a name' });
  const list = el('ul', { class: 'picker', id: 'provider-picker', 'aria-label': 'Providers' });
  const takes = (p) => (p.kind === 'api_key' ? 'an API key' : p.choices ? p.choices.options.map((o) => o.label.toLowerCase()).join(' or ')
    : p.fields.filter((f) => f.required).map((f) => fieldLabel(f).toLowerCase()).join(', '));
  const draw = () => {
    const q = search.value.trim().toLowerCase();
    list.replaceChildren();
    for (const p of providers) {
      if ((pools[p.id] || []).length) continue;
      if (q && !p.displayName.toLowerCase().includes(q) && !p.id.includes(q)) continue;
      list.append(el('li', {}, el('button', { type: 'button', 'data-pick': p.id, onclick: () => openAddPanel(p, '#add-provider') },
        el('span', { text: p.displayName }), el('span', { class: 'sub', text: `Takes ${takes(p)}.` }),
        el('span', { class: 'sub', 'data-pick-status': p.id, text: statusOf(p) }))));
    }
    if (!list.childElementCount) list.append(el('li', { class: 'hint', text: q ? `No provider matches "${search.value.trim()}".` : 'Every provider has a key.' }));
    admins.replaceChildren();
    for (const a of adminProviders) {
      if ((adminPools[a.id] || []).length) continue;
      if (q && !a.displayName.toLowerCase().includes(q) && !a.id.includes(q)) continue;
      const of = providers.find((x) => x.id === a.adminOf) || { displayName: a.adminOf };
      const can = [of.rotation ? 'rotate' : '', of.revocation ? 'revoke' : ''].filter(Boolean).join(' and ');
      admins.append(el('li', {}, el('button', { type: 'button', 'data-pick': a.id, onclick: () => openAddPanel(a, '#add-provider') },
        el('span', { text: a.displayName }), el('span', { class: 'sub', text: `Takes ${takes(a)}.` }),
        el('span', { class: 'sub', text: `Lets keybroker ${can || 'manage'} ${of.displayName} keys at ${of.displayName}.` }))));
    }
    adminBox.hidden = !admins.childElementCount;
  };
  const admins = el('ul', { class: 'picker', id: 'admin-picker', 'aria-labelledby': 'admin-picker-title' });
  const adminBox = el('div', { class: 'admin-picker' }, el('h3', { class: 'panel-sub', id: 'admin-picker-title', text: 'Admin credentials for rotation' }),
    el('p', { class: 'hint', text: 'An admin credential lets keybroker rotate and revoke keys at the provider. It is never resolved and never served to calls.' }), admins);
  search.addEventListener('input', draw);
  draw();
  openPanel('Add a provider', '#add-provider', el('label', { for: 'provider-search', text: 'Search providers' }), search, list, adminBox);
}
$('add-provider').addEventListener('click', openPicker);

// addForm adds a key to a provider's pool. Adding asks first when the
// new key would change what serves (it would serve first, or share the
// first place).
function addForm(p, pool) {
  const last = pool.length ? Math.max(...pool.map((k) => k.priority)) : 0;
  const name = el('input', { id: 'newname-' + p.id, autocomplete: 'off', maxlength: '120' });
  const priority = el('input', { id: 'priority-' + p.id, type: 'number', min: '0', max: '1000', value: String(pool.length ? Math.min(1000, last + 100) : 100),
    'aria-describedby': 'priority-hint-' + p.id });
  const err = el('p', { class: 'error', id: 'err-' + p.id, role: 'alert' });
  const settings = [el('label', { for: 'newname-' + p.id, text: 'Name (optional)' }), name,
    el('label', { for: 'priority-' + p.id, text: 'Priority' }), priority,
    el('p', { class: 'hint', id: 'priority-hint-' + p.id, text: pool.length ? `Lower serves first; the pool's keys are at ${pool.map((k) => k.priority).join(', ')}.` : 'Lower serves first.' }),
    err, el('div', { class: 'actions' }, el('button', { type: 'submit', class: 'primary', text: 'Add key' }))];
  // An api_key provider takes one password field, as it always has; the
  // other kinds a form built from their schema (credentialForm).
  let input = null, cred = null;
  const form = el('form', { 'data-form': p.id, method: 'post' });
  if (p.kind === 'api_key') {
    input = el('input', { id: 'key-' + p.id, type: 'password', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': 'err-' + p.id + ' hint-' + p.id });
    form.append(el('label', { for: 'key-' + p.id, text: `New ${p.displayName} key` }), input,
      el('p', { class: 'hint', id: 'hint-' + p.id, text: p.formatHint }), ...settings);
  } else {
    cred = credentialForm(p, 'add-' + p.id, null);
    form.append(cred.node, ...settings);
  }
  if (p.adminOf) {
    form.prepend(el('p', { class: 'hint', text: `Never resolved, never served to calls: keybroker uses it only to rotate and revoke ${providerName(p.adminOf)} keys ` +
      `of this ${current.kind} at ${providerName(p.adminOf)}.` }));
  } else if (current.kind === 'workspace' && !pool.length) {
    form.prepend(el('p', { class: 'hint', text: `Now: ${statusOf(p)}.` }));
  }
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const pr = Number(priority.value);
    const label = name.value ? `'${name.value}'` : 'the new key';
    if (cred) cred.clearErrors();
    keyAction(err, async () => {
      const credential = cred ? cred.read() : null; // a field's own error before anything is asked
      if (!p.adminOf && !await confirmAdd(p, pool, pr, label)) return false;
      const body = { priority: pr };
      if (cred) {
        body.credential = credential;
        cred.clearSecrets(); // the secrets leave the DOM before the request returns
      } else {
        body.apiKey = input.value;
        input.value = ''; // the key leaves the DOM before the request returns
      }
      if (name.value) body.name = name.value;
      if (!pool.length) body.keyId = p.adminOf ? 'admin' : 'default'; // the v1 routes' key
      return api('POST', poolPath(p.id), body);
    }, (r) => p.adminOf ? `Added ${p.displayName} credential '${r.name || r.keyId}': keybroker can now manage ${providerName(p.adminOf)} keys at the provider.`
      : `Added ${p.displayName} key '${r.name || r.keyId}' (${r.maskedKey}) at priority ${r.priority}.`,
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

// renderHistory shows a key's versions in the side panel: which value
// each was (its mask), who wrote it and when; an admin rolls back to one.
// The panel also says the key's details that the row keeps short.
async function renderHistory(p, k) {
  const versions = (await api('GET', `${keyPath(p.id, k.keyId)}/versions`)).versions;
  const id = `${p.id}/${k.keyId}`;
  const details = el('dl', { class: 'kv' },
    el('dt', { text: 'Key id' }), el('dd', { text: k.keyId }),
    el('dt', { text: 'Priority' }), el('dd', { text: String(k.priority) }),
    el('dt', { text: 'Models' }), el('dd', { text: k.models.length ? k.models.join(', ') : 'every model' }),
    el('dt', { text: 'Usage' }), el('dd', { text: k.lastUsedAt ? `served ${plural(k.resolves, 'time')}, last ${when(k.lastUsedAt)}` : 'never used' }),
    el('dt', { text: 'Added' }), el('dd', { text: `${when(k.createdAt)} by ${actorLabel(k.createdBy, k.createdByName)}` }),
    el('dt', { text: 'Expires' }), el('dd', { text: k.expiresAt ? when(k.expiresAt) + (k.expiry && k.expiry !== 'valid' ? ` (${k.expiry})` : '') : 'no expiry set' }),
    el('dt', { text: 'Id at the provider' }), el('dd', { text: k.providerKeyId || 'not known' }));
  const title = el('h3', { id: 'history-title', text: `${p.displayName} key ${keyName(k)} (key id ${k.keyId}): versions` });
  const list = el('ol', { id: 'history' });
  for (const v of versions) {
    const state = v.current ? 'current' : v.destroyed ? 'destroyed' : v.deletedAt ? 'deleted' : 'available';
    const by = v.createdBy ? `written by ${actorLabel(v.createdBy, v.createdByName)}` : 'written in Vault directly';
    const item = el('li', { 'data-version': String(v.version) },
      el('strong', { text: `Version ${v.version}` }), ` (${state}) `,
      v.maskedKey ? el('span', { class: 'masked', text: v.maskedKey }) : '', ` ${by}, `, el('span', { class: 'when', text: when(v.createdAt) }));
    if (!v.current && state === 'available' && canEdit()) {
      item.append(' ', el('button', { type: 'button', class: 'small-btn', 'data-rollback': String(v.version), text: `Roll back to version ${v.version}`,
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
  const section = el('section', { id: 'history-section', 'aria-labelledby': 'history-title' }, details, title, list);
  if (p.rotation) {
    // The key's rotations at the provider, newest first.
    const rotations = el('ol', { id: 'rotations', class: 'history' });
    try {
      const rs = (await api('GET', `${keyPath(p.id, k.keyId)}/rotations`)).rotations;
      for (const r of rs) rotations.append(rotationItem(p, r));
      if (!rs.length) rotations.append(el('li', { class: 'hint', text: 'Never rotated at the provider.' }));
    } catch (e) {
      rotations.append(el('li', { class: 'error', text: e.message }));
    }
    section.append(el('h3', { id: 'rotations-title', class: 'panel-sub', text: `Rotations at ${p.displayName}` }), rotations);
  }
  openPanel(`${p.displayName} key ${keyName(k)}`, `button[data-menu="${CSS.escape(id)}"]`, section);
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
    'key.expiring': () => `warned that ${key} is expiring${detail}`,
    'key.rotation': () => `rotated ${key} at the provider${detail}`,
    'key.revoke_at_provider': () => `revoked ${key} at the provider${detail}`,
    'lifecycle.settings': () => `changed the rotation schedule${detail}`,
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
  $('token-list-error').textContent = '';
  const list = $('token-list');
  const tokens = (await api('GET', '/v1/tokens')).tokens;
  list.replaceChildren();
  for (const t of tokens) {
    const reach = [...t.workspaces.map((w) => 'workspace ' + w), ...t.organizations.map((o) => 'organization ' + o)];
    const item = el('li', { 'data-token': t.id },
      el('div', {}, el('strong', { text: t.description || '(no description)' }), ' ', el('code', { class: 'small', text: t.id }), ' ',
        el('span', { class: 'badge ' + (t.state === 'active' ? 'active' : t.state === 'revoked' ? 'failing' : 'disabled'), 'data-token-state': t.id, text: t.state })),
      el('div', { class: 'meta', text: `role ${t.role}${reach.length ? ', ' + reach.join(', ') : ''}` }),
      el('div', { class: 'meta', text: `created ${when(t.createdAt)} by ${actorLabel(t.createdBy)}` +
        (t.expiresAt ? `, ${t.state === 'expired' ? 'expired' : 'expires'} ${when(t.expiresAt)}` : ', never expires') +
        (t.revokedAt ? `, revoked ${when(t.revokedAt)}` : '') }));
    if (t.state === 'active' && t.id !== me.tokenId) {
      item.append(el('button', { type: 'button', class: 'danger small-btn', 'data-revoke': t.id, text: 'Revoke',
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
            $('token-list-error').textContent = e.message;
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
    $('token-form').reset();
    $('token-dialog').close();
    showCreatedToken(created.token);
    created.token = '';
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
  $('token-new').focus();
});
$('token-new').addEventListener('click', () => {
  $('token-error').textContent = '';
  $('token-dialog').showModal();
  $('token-description').focus();
});
$('token-dialog-close').addEventListener('click', () => $('token-dialog').close());

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
