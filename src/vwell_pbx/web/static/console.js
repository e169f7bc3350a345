// vwell-pbx console: sign in, watch the live calls and the call history, call any
// method from a form built from its schema, and watch live events. Built on the browser
// client (/client.js); the calls panels are console-calls.js. Everything that comes
// from the server is inserted with textContent, never as HTML. Every string a person
// reads comes from the language's catalogue (i18n.js): this file only names keys.
import {connect, PbxError} from '/client.js';
import {CallHistoryPanel, LiveCallsPanel} from '/static/console-calls.js';
import {element} from '/static/dom.js';
import {
  Catalogue, LANGUAGE_KEY, chooseLanguage, loadCatalogue, loadLanguages, say, sayAttribute,
  sayMethodText, sayRaw, translatePage,
} from '/static/i18n.js';

const MAX_SHOWN = 500;      // events kept in the page
const MAX_KEPT = 5000;      // events kept for export
const CALL_TIMEOUT = 60000;
const STORAGE_KEY = 'vwell-console';
const FILTER_EXAMPLE = '{"CallerIDNum": "+7978*"}';

const $ = (id) => document.getElementById(id);

const ui = {
  state: $('state'), who: $('who'), signOut: $('sign-out'),
  signinPanel: $('signin-panel'), signinForm: $('signin-form'), signIn: $('sign-in'),
  signinError: $('signin-error'), url: $('server-url'), login: $('login'),
  login2: $('login2'), password: $('password'), sha1: $('sha1'),
  methodForm: $('method-form'), methodControls: $('method-controls'), method: $('method'),
  methodSummary: $('method-summary'), methodFields: $('method-fields'),
  answerStatus: $('answer-status'), answer: $('answer'),
  subscribeForm: $('subscribe-form'), subscribeControls: $('subscribe-controls'),
  eventName: $('event-name'), eventFilters: $('event-filters'),
  subscribeError: $('subscribe-error'), subscriptions: $('subscriptions'),
  pause: $('pause'), clear: $('clear'), export: $('export'), count: $('event-count'),
  events: $('events'), language: $('language'), methodNote: $('method-note'),
};

const texts = {
  catalogue: () => session.catalogue,
  describeError: (error) => describeError(error),
};

const callHistory = new CallHistoryPanel({
  form: $('history-form'), controls: $('history-controls'),
  extension: $('history-extension'), number: $('history-number'),
  direction: $('history-direction'), reason: $('history-reason'),
  since: $('history-since'), until: $('history-until'), limit: $('history-limit'),
  reset: $('history-reset'), error: $('history-error'), status: $('history-status'),
  rows: $('history-rows'), more: $('history-more'),
}, texts);

const liveCalls = new LiveCallsPanel({
  rows: $('live-rows'), count: $('live-count'), empty: $('live-empty'),
  note: $('live-note'), announce: $('live-announce'),
}, texts, (call) => callHistory.callEnded(call));

const session = {
  pbx: null,
  methods: new Map(),
  subs: [],             // {label, off, li}
  events: [],           // {receivedAt, event} or {receivedAt, gap} kept for export
  gapsKept: 0,          // how many of those are gaps (not counted as events)
  seenIds: new Set(),   // eventIds shown (bounded): a resume may replay one event per subscription
  seen: new WeakSet(),  // one event object can match several subscriptions
  paused: false,
  hidden: 0,            // events received while paused, not shown yet
  catalogue: null,      // the shown language's strings (i18n.js Catalogue)
};

// Exposed for the browser's developer tools (and the tests): the live client.
window.vwellConsole = session;

function pretty(value) {
  return JSON.stringify(value, null, 2);
}

// --- language -------------------------------------------------------------------------

/** Show key's text in el, now and after every language switch. */
function show(el, key, params) {
  say(session.catalogue, el, key, params);
}

function stateKey(state, detail) {
  switch (state) {
    case 'connecting': return 'state.connecting';
    case 'open': return 'state.open';
    case 'reconnecting':
      return detail && detail.delay !== undefined ? 'state.retrying' : 'state.reconnecting';
    default: return detail && detail.error ? 'state.disconnected' : 'state.closed';
  }
}

async function useLanguage(language) {
  session.catalogue = await loadCatalogue(language);
  translatePage(session.catalogue);
  callHistory.relocalise();
  ui.language.value = language;
}

async function switchLanguage() {
  const language = ui.language.value;
  const previous = session.catalogue;
  try {
    await useLanguage(language);
  } catch (error) {
    // The catalogue could not be loaded: stay in the language that works.
    ui.language.value = previous.language;
    console.error(`cannot load the ${language} strings`, error);
    return;
  }
  try {
    localStorage.setItem(LANGUAGE_KEY, language);
  } catch { /* storage disabled: the choice lasts until the page is reloaded */ }
}

async function startLanguage() {
  let offered = {fallback: 'en', languages: {en: 'English'}};
  try { offered = await loadLanguages(); } catch (error) { console.error(error); }
  const supported = Object.keys(offered.languages);
  // Each language is named in itself (English, Русский): the reader may not know ours.
  ui.language.replaceChildren(...Object.entries(offered.languages).map(
    ([code, name]) => element('option', {value: code, text: name, lang: code})));
  let saved = null;
  try { saved = localStorage.getItem(LANGUAGE_KEY); } catch { saved = null; }
  const chosen = chooseLanguage(saved, navigator.languages || [navigator.language],
    supported, offered.fallback);
  for (const language of new Set([chosen, offered.fallback])) {
    try {
      await useLanguage(language);
      return;
    } catch (error) {
      console.error(`cannot load the ${language} strings`, error);
    }
  }
  // No catalogue at all: the page shows its keys, but it works.
  session.catalogue = new Catalogue(offered.fallback, {});
  translatePage(session.catalogue);
}

// --- connection state --------------------------------------------------------------

function showState(state, detail) {
  const seconds = detail && detail.delay !== undefined ? detail.delay / 1000 : 0;
  // One decimal, written the language's way (1.5 s, 1,5 с): round here, format in i18n.js.
  show(ui.state, stateKey(state, detail),
    {attempt: detail ? detail.attempt : 0, seconds: Math.round(seconds * 10) / 10});
  ui.state.dataset.state = state;
  for (const entry of session.subs) showSubscriptionState(entry, state);
  const usable = state === 'open' || state === 'reconnecting';
  ui.methodControls.disabled = !usable;
  ui.subscribeControls.disabled = !usable;
}

// --- sign in / out -----------------------------------------------------------------

function defaultServerUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/api`;
}

function restoreForm() {
  let saved = {};
  try { saved = JSON.parse(localStorage.getItem(STORAGE_KEY) || '{}'); } catch { saved = {}; }
  ui.url.value = saved.url || defaultServerUrl();
  ui.login.value = saved.login || '';
  ui.login2.value = saved.login2 || '';
}

function rememberForm() {
  try {
    // Never the password or its SHA-1.
    localStorage.setItem(STORAGE_KEY, JSON.stringify(
      {url: ui.url.value, login: ui.login.value, login2: ui.login2.value}));
  } catch { /* storage disabled: nothing to remember */ }
}

async function signIn(event) {
  event.preventDefault();
  sayRaw(ui.signinError, '');
  if (!ui.signinForm.reportValidity()) return;
  if (!ui.password.value && !ui.sha1.value) {
    show(ui.signinError, 'signin.needPassword');
    ui.password.focus();
    return;
  }
  ui.signIn.disabled = true;
  const options = {login: ui.login.value, login2: ui.login2.value, onState: showState};
  if (ui.sha1.value) options.sha1 = ui.sha1.value.trim();
  else options.password = ui.password.value;
  try {
    session.pbx = await connect(ui.url.value.trim(), options);
  } catch (error) {
    sayRaw(ui.signinError, describeError(error));
    showState('closed', {});
    ui.signIn.disabled = false;
    ui.password.focus();
    return;
  }
  ui.signIn.disabled = false;
  ui.password.value = '';
  ui.sha1.value = '';
  rememberForm();
  session.pbx.onState((state, detail) => {
    if (state === 'closed' && detail.error) {
      // Reconnecting gave up (e.g. the password changed): back to the sign-in form.
      signedOut(describeError(detail.error));
    }
  });
  session.pbx.onGap(receiveGap);
  liveCalls.start(session.pbx);
  callHistory.start(session.pbx);
  ui.who.textContent = `${ui.login.value} / ${ui.login2.value}`;
  ui.signinPanel.hidden = true;
  ui.signOut.hidden = false;
  ui.method.focus();
}

function signedOut(message) {
  session.pbx = null;
  liveCalls.stop();
  callHistory.stop();
  session.subs = [];
  ui.subscriptions.replaceChildren();
  ui.who.textContent = '';
  ui.signOut.hidden = true;
  ui.signinPanel.hidden = false;
  sayRaw(ui.signinError, message || '');
  ui.password.focus();
}

function signOut() {
  const pbx = session.pbx;
  signedOut('');
  if (pbx) pbx.close();
  showState('closed', {});
}

function describeError(error) {
  if (error instanceof PbxError) return `${error.errCode}: ${error.message}`;
  return String(error && error.message ? error.message : error);
}

// --- the method form ----------------------------------------------------------------

function typesOf(prop) {
  const types = new Set();
  const add = (p) => {
    if (Array.isArray(p.type)) p.type.forEach((t) => types.add(t));
    else if (p.type) types.add(p.type);
    (p.anyOf || p.oneOf || []).forEach(add);
  };
  add(prop);
  types.delete('null');
  return types;
}

function kindOf(prop) {
  const types = typesOf(prop);
  if (types.has('object') || types.has('array')) return 'json';
  if (types.size === 1 && types.has('boolean')) return 'boolean';
  if (types.size && [...types].every((t) => t === 'integer' || t === 'number')) return 'number';
  return 'text';
}

const PLACEHOLDERS = {
  'send.fields': '{"action": "Ping"}',
  'dial.from': '269', 'dial.to': '+7 100 200 30 40',
  'redirect.channel': 'YSGSM/11-1', 'redirect.toTel': '269',
  'gsmSendSMS.tel': '+7 100 200 30 40',
  'onEvent.event': '{"name": "Newchannel"}', 'onceEvent.event': '{"name": "Newchannel"}',
  'dispatchEvent.event': '{"name": "MyEvent", "ticket": 42}',
};

function renderMethodForm() {
  const method = session.methods.get(ui.method.value);
  ui.methodFields.replaceChildren();
  if (!method) return;
  // The summary and the argument descriptions are the server's (English); the
  // catalogue may translate them, keyed by method and argument name.
  sayMethodText(session.catalogue, ui.methodSummary, method.name, null, method.summary);
  ui.methodNote.hidden = !(method.name === 'onEvent' || method.name === 'onceEvent');
  const schema = method.schema || {};
  const required = new Set(schema.required || []);
  for (const [name, prop] of Object.entries(schema.properties || {})) {
    const id = `arg-${name}`;
    const kind = kindOf(prop);
    const hintId = `${id}-hint`;
    const description = prop.description || '';
    let input;
    if (kind === 'boolean') {
      input = element('input', {id, type: 'checkbox', name});
      if (prop.default === true) input.checked = true;
      const label = element('label', {class: 'check', for: id}, input, ` ${name}`);
      ui.methodFields.append(label);
    } else {
      const label = element('label', {for: id, text: name});
      if (required.has(name)) label.classList.add('required');
      if (kind === 'json') {
        input = element('textarea', {id, name, spellcheck: 'false', rows: '3'});
      } else {
        input = element('input', {id, name, type: kind === 'number' ? 'number' : 'text',
          spellcheck: 'false', autocomplete: 'off'});
        if (kind === 'number') {
          if (prop.minimum !== undefined) input.min = String(prop.minimum);
          if (prop.maximum !== undefined) input.max = String(prop.maximum);
        }
      }
      const example = PLACEHOLDERS[`${method.name}.${name}`];
      if (example) input.placeholder = example;
      else if (prop.default !== undefined && prop.default !== null) {
        input.placeholder = String(prop.default);
      }
      if (required.has(name)) input.required = true;
      ui.methodFields.append(label, input);
    }
    input.dataset.kind = kind;
    if (description) {
      input.setAttribute('aria-describedby', hintId);
      const hint = element('span', {id: hintId, class: 'field-hint'});
      sayMethodText(session.catalogue, hint, method.name, name, description);
      ui.methodFields.append(hint);
    }
  }
}

/** A value the form cannot send; key and params say why, in the page's language. */
class FieldError extends Error {
  constructor(input, key, params) {
    super(key);
    this.input = input;
    this.key = key;
    this.params = params;
  }
}

function collectArguments() {
  const args = {};
  for (const input of ui.methodFields.querySelectorAll('input, textarea')) {
    const name = input.name;
    const kind = input.dataset.kind;
    if (kind === 'boolean') {
      if (input.checked) args[name] = true;
      continue;
    }
    const raw = input.value.trim();
    if (raw === '') {
      if (input.required) throw new FieldError(input, 'field.required', {name});
      continue;
    }
    if (kind === 'number') {
      const number = Number(raw);
      if (!Number.isFinite(number)) throw new FieldError(input, 'field.notNumber', {name});
      args[name] = number;
    } else if (kind === 'json') {
      try {
        args[name] = JSON.parse(raw);
      } catch (error) {
        throw new FieldError(input, 'field.notJson', {name, detail: error.message});
      }
    } else {
      args[name] = input.value;
    }
  }
  return args;
}

function showAnswer(ok, statusKey, params, body) {
  show(ui.answerStatus, statusKey, params);
  ui.answerStatus.dataset.ok = String(ok);
  ui.answer.textContent = pretty(body);
}

async function callMethod(event) {
  event.preventDefault();
  const pbx = session.pbx;
  if (!pbx) return;
  const name = ui.method.value;
  let args;
  try {
    args = collectArguments();
  } catch (error) {
    if (error instanceof FieldError) {
      showAnswer(false, error.key, error.params, {});
      error.input.focus();
      return;
    }
    throw error;
  }
  show(ui.answerStatus, 'answer.waiting', {method: name});
  delete ui.answerStatus.dataset.ok;
  const started = performance.now();
  try {
    const answer = await pbx.call(name, args, {timeout: CALL_TIMEOUT});
    const ms = Math.round(performance.now() - started);
    showAnswer(true, 'answer.ok', {method: name, ms}, answer);
  } catch (error) {
    const body = error.response || {err: error.message, errCode: error.errCode || null};
    showAnswer(false, 'answer.failed', {method: name, error: describeError(error)}, body);
  }
}

async function loadMethods() {
  try {
    const response = await fetch('/console/methods.json', {cache: 'no-cache'});
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const document_ = await response.json();
    for (const method of document_.methods) session.methods.set(method.name, method);
  } catch (error) {
    show(ui.methodSummary, 'call.loadFailed', {detail: error.message});
    return;
  }
  ui.method.replaceChildren(...[...session.methods.keys()].map(
    (name) => element('option', {value: name, text: name})));
  renderMethodForm();
}

// --- events ---------------------------------------------------------------------------

function parseFilters(text) {
  const raw = text.trim();
  if (!raw) return {};
  let value;
  try {
    value = JSON.parse(raw);
  } catch (error) {
    throw new FieldError(ui.eventFilters, 'events.filtersNotJson', {detail: error.message});
  }
  if (value === null || typeof value !== 'object' || Array.isArray(value)) {
    throw new FieldError(ui.eventFilters, 'events.filtersNotObject', {example: FILTER_EXAMPLE});
  }
  return value;
}

function subscribe(event) {
  event.preventDefault();
  sayRaw(ui.subscribeError, '');
  const pbx = session.pbx;
  if (!pbx) return;
  const name = ui.eventName.value.trim() || '*';
  let filters;
  try {
    filters = parseFilters(ui.eventFilters.value);
  } catch (error) {
    if (!(error instanceof FieldError)) throw error;
    show(ui.subscribeError, error.key, error.params);
    ui.eventFilters.focus();
    return;
  }
  const label = subscriptionLabel({name, filters});
  let off;
  try {
    off = pbx.on(name, filters, receive);
  } catch (error) {
    sayRaw(ui.subscribeError, describeError(error));
    return;
  }
  const state = element('span', {class: 'sub-state'});
  show(state, 'subscription.pending');
  const button = element('button', {type: 'button'});
  show(button, 'subscription.unsubscribe', {label});
  sayAttribute(session.catalogue, button, 'aria-label', 'subscription.unsubscribeLabel', {label});
  const li = element('li', {dataset: {name, state: 'pending'}},
    element('span', {class: 'label', text: label}), state, button);
  const entry = {label, off, li, state, confirmed: false};
  session.subs.push(entry);
  ui.subscriptions.append(li);
  button.addEventListener('click', () => unsubscribe(entry));
  off.ready.then(() => {
    entry.confirmed = true;
    showSubscriptionState(entry, pbx.state);
  }, (error) => {
    li.remove();
    session.subs = session.subs.filter((s) => s !== entry);
    show(ui.subscribeError, 'subscription.failed', {label, error: describeError(error)});
  });
}

function showSubscriptionState(entry, connection) {
  if (!entry.confirmed) return;
  // The client subscribes again after a reconnect, under a new id.
  const id = entry.off.subscriptionId;
  const active = connection === 'open' && id;
  entry.li.dataset.state = active ? 'active' : 'waiting';
  if (active) show(entry.state, 'subscription.active', {id});
  else show(entry.state, 'subscription.waiting');
}

async function unsubscribe(entry) {
  const next = entry.li.nextElementSibling || entry.li.previousElementSibling;
  entry.li.remove();
  session.subs = session.subs.filter((s) => s !== entry);
  (next ? next.querySelector('button') : ui.eventName).focus();
  await entry.off();
}

function alreadyShown(event) {
  const id = event.eventId;
  if (typeof id !== 'string') {
    if (session.seen.has(event)) return true;
    session.seen.add(event);
    return false;
  }
  if (session.seenIds.has(id)) return true;
  session.seenIds.add(id);
  // A Set iterates in insertion order: the first one is the oldest.
  if (session.seenIds.size > MAX_KEPT) session.seenIds.delete(session.seenIds.values().next().value);
  return false;
}

function keep(item) {
  session.events.push(item);
  if (item.gap) session.gapsKept += 1;
  if (session.events.length > MAX_KEPT) {
    const dropped = session.events.splice(0, session.events.length - MAX_KEPT);
    session.gapsKept -= dropped.filter((old) => old.gap).length;
  }
  if (session.paused) session.hidden += 1;
  else showItem(item);
  updateCount();
}

function receive(event) {
  if (alreadyShown(event)) return;
  keep({receivedAt: new Date().toISOString(), event});
}

// After a reconnect the server could not replay everything missed (it restarted, or
// the console was away too long): mark the place in the list, so nobody takes the
// events around it for complete.
function receiveGap(detail) {
  // Only this panel's subscriptions: the Live calls panel reports its own.
  const mine = new Set(session.subs.map((entry) => entry.label));
  const names = [...new Set(detail.subscriptions.map(subscriptionLabel))]
    .filter((label) => mine.has(label));
  if (names.length) keep({receivedAt: detail.at, gap: {subscriptions: names}});
}

function subscriptionLabel(sub) {
  return Object.keys(sub.filters).length ? `${sub.name} ${JSON.stringify(sub.filters)}` : sub.name;
}

function showItem(item) {
  if (item.gap) showGap(item);
  else showEvent(item);
}

function showGap(item) {
  const text = element('span', {class: 'gap-text'});
  show(text, 'events.gap', {names: item.gap.subscriptions.join(', ')});
  const li = element('li', {class: 'gap', dataset: {gap: 'true'}},
    element('time', {dateTime: item.receivedAt, text: item.receivedAt.slice(11, 23)}),
    text);
  ui.events.prepend(li);
  while (ui.events.childElementCount > MAX_SHOWN) ui.events.lastElementChild.remove();
}

const BRIEF_FIELDS = ['Channel', 'CallerIDNum', 'Exten', 'ChannelStateDesc', 'Uniqueid'];

function showEvent(item) {
  const event = item.event;
  const brief = BRIEF_FIELDS.filter((k) => typeof event[k] === 'string')
    .map((k) => `${k}=${event[k]}`).join('  ');
  // A one-line summary; the whole event (as JSON) one click or Enter away.
  const li = element('li', {dataset: {name: String(event.name || '')}},
    element('details', {},
      element('summary', {class: 'meta'},
        element('time', {dateTime: item.receivedAt, text: item.receivedAt.slice(11, 23)}),
        element('span', {class: 'name', text: String(event.name || event.Event || '?')}),
        element('span', {class: 'brief', text: brief})),
      element('pre', {text: pretty(event)})));
  ui.events.prepend(li);
  while (ui.events.childElementCount > MAX_SHOWN) ui.events.lastElementChild.remove();
}

function updateCount() {
  const count = session.events.length - session.gapsKept;
  if (session.paused) show(ui.count, 'events.countPaused', {count, hidden: session.hidden});
  else show(ui.count, 'events.count', {count});
}

function togglePause() {
  session.paused = !session.paused;
  ui.pause.setAttribute('aria-pressed', String(session.paused));
  show(ui.pause, session.paused ? 'events.resume' : 'events.pause');
  if (!session.paused && session.hidden) {
    const hidden = session.events.slice(-Math.min(session.hidden, MAX_SHOWN));
    hidden.forEach(showItem);
    session.hidden = 0;
  }
  updateCount();
}

function clearEvents() {
  session.events = [];
  session.gapsKept = 0;
  session.hidden = 0;
  ui.events.replaceChildren();
  updateCount();
}

function exportEvents() {
  const blob = new Blob([pretty(session.events)], {type: 'application/json'});
  const url = URL.createObjectURL(blob);
  const stamp = new Date().toISOString().replace(/[:.]/g, '-');
  const link = element('a', {href: url, download: `vwell-events-${stamp}.json`});
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

// --- wiring ---------------------------------------------------------------------------

function submitOnCtrlEnter(event) {
  if (event.key === 'Enter' && (event.ctrlKey || event.metaKey) &&
      event.target instanceof HTMLTextAreaElement) {
    event.preventDefault();
    ui.methodForm.requestSubmit();
  }
}

ui.signinForm.addEventListener('submit', signIn);
ui.signOut.addEventListener('click', signOut);
ui.method.addEventListener('change', renderMethodForm);
ui.methodForm.addEventListener('submit', callMethod);
ui.methodForm.addEventListener('keydown', submitOnCtrlEnter);
ui.subscribeForm.addEventListener('submit', subscribe);
ui.pause.addEventListener('click', togglePause);
ui.clear.addEventListener('click', clearEvents);
ui.export.addEventListener('click', exportEvents);
ui.language.addEventListener('change', switchLanguage);

// The strings first: everything after this shows text through the catalogue.
await startLanguage();
restoreForm();
showState('closed', {});
updateCount();
loadMethods();
// Ready (the page becomes visible) before focusing: a hidden element takes no focus.
document.documentElement.dataset.ready = 'true';
(ui.login.value ? ui.password : ui.login).focus();
