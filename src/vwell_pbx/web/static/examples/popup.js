// vwell-pbx-srv example: a CRM pop-up card for incoming calls.
//
// Sign in, and a card pops up whenever a call rings at one of your extensions (the
// `extensions` of the whoami answer, kept as pbx.identity): the caller's number and
// name, the direction, how long it has been ringing and, if your role may use
// `redirect`, a form to answer it elsewhere by sending the caller to another number.
// The card goes when the call is answered (here or elsewhere), moves away, or ends;
// a call your extension missed stays in "Missed calls".
//
// All of it is the JS client's calls API (docs/client.md):
//   pbx.calls.watch(onChange)   the active calls, kept current, re-read after reconnects
//   callSeconds(call)           a call's ring and talk seconds, counting on
//   pbx.call('redirect', ...)   any API method
import {callSeconds, connect} from '/client.js';
// The texts: this page uses the console's catalogues; a CRM would use its own words.
import {LANGUAGE_KEY, chooseLanguage, loadCatalogue, say, sayRaw, translatePage} from '/static/i18n.js';

const MAX_MISSED = 50;                        // entries kept in the missed list
const REDIRECT_KEY = 'vwell-popup-redirect';  // localStorage: the last "redirect to" number

const DIRECTIONS = {
  inbound: 'direction.inbound', outbound: 'direction.outbound',
  internal: 'direction.internal', unknown: 'direction.unknown',
};

const $ = (id) => document.getElementById(id);
let catalogue = null;  // the page's language (i18n.js)
let pbx = null;        // the signed-in client
const cards = new Map();  // callId -> {article, call, openedAt}

// --- which calls ring here --------------------------------------------------------------

const isMine = (extension) => pbx.identity.extensions.includes(extension);

// A phone's channel is TECH/EXTENSION-suffix (SIP/269-0000001a): the extension whose
// phone it is, or null for anything else (a trunk such as YSGSM/11-1 is nobody's).
const phoneOf = (channel) => /^[A-Za-z0-9]+\/(\d+)-[^/]*$/.exec(channel)?.[1] ?? null;

// One of my phones is still in the call: it rings (or talks) here.
const stillHere = (call) => call.channels.some((channel) => isMine(phoneOf(channel)));

// The caller's side: the channel to move when answering elsewhere.
const callerChannel = (call) => call.channels.find((channel) => !isMine(phoneOf(channel)));

function watchCalls() {
  pbx.calls.watch((calls, event) => {
    if (event === null) {
      // Read (again) from the server, e.g. after a reconnect: show what rings here now.
      for (const [callId, card] of [...cards]) {
        const call = calls.get(callId);
        if (!call || call.status !== 'ringing' || !stillHere(call)) closeCard(callId);
        else fillCard(card, call);
      }
      for (const call of calls.values()) {
        if (call.status === 'ringing' && (isMine(call.extension) || stillHere(call))) openCard(call);
      }
    } else if (event.name === 'call.ringing' && isMine(event.extension)) {
      openCard(event);  // the pop-up: one call.ringing per ringing extension
    } else if (event.name === 'call.missed' && isMine(event.extension)) {
      addMissed(event);  // after call.ended, once per extension that rang unanswered
    } else if (cards.has(event.callId)) {
      const over = event.name === 'call.answered' || event.name === 'call.ended';
      if (over || !stillHere(event)) closeCard(event.callId);  // answered, gone, or moved
      else fillCard(cards.get(event.callId), event);  // e.g. call.updated: a new caller ID
    }
    $('waiting').hidden = cards.size > 0;
  });
  setInterval(() => cards.forEach(showRingTime), 1000);
}

// --- the cards ---------------------------------------------------------------------------

function openCard(call) {
  if (cards.has(call.callId)) return;
  const article = $('card').content.firstElementChild.cloneNode(true);
  const card = {article, call, openedAt: performance.now()};
  article.dataset.callId = call.callId;
  const input = article.querySelector('input[name=to]');
  input.id = `redirect-${cards.size}-${Date.now()}`;
  article.querySelector('.redirect label').htmlFor = input.id;
  if (pbx.identity.methods.includes('redirect')) {
    try { input.value = localStorage.getItem(REDIRECT_KEY) || ''; } catch { /* no storage */ }
    article.querySelector('.redirect').addEventListener('submit', (e) => redirect(e, card));
  } else {
    article.querySelector('.redirect').remove();  // this role may not move calls
  }
  translatePage(catalogue, article);
  cards.set(call.callId, card);
  fillCard(card, call);
  $('cards').prepend(article);
}

function fillCard(card, call) {
  card.call = call;
  const one = (selector) => card.article.querySelector(selector);
  one('.from-number').textContent = call.fromNumber || call.fromName || '?';
  one('.from-name').textContent = call.fromName && call.fromName !== call.fromNumber ? call.fromName : '';
  one('.direction').dataset.direction = call.direction;
  say(catalogue, one('.direction'), DIRECTIONS[call.direction] || DIRECTIONS.unknown);
  say(catalogue, one('.callee'), 'popup.toExtension', {extension: call.extension});
  showRingTime(card);
}

function showRingTime(card) {
  // A call ringing since it started: its ring time. A call transferred here after it
  // was answered elsewhere: since the card opened.
  const seconds = card.call.status === 'ringing'
    ? callSeconds(card.call).ringSeconds
    : (performance.now() - card.openedAt) / 1000;
  say(catalogue, card.article.querySelector('.ringing-for'), 'popup.ringingFor',
    {seconds: Math.floor(seconds)});
}

function closeCard(callId) {
  cards.get(callId)?.article.remove();
  cards.delete(callId);
}

async function redirect(event, card) {
  event.preventDefault();
  const form = event.target;
  const to = form.elements.to.value.trim();
  const error = form.querySelector('.error');
  if (!to) {
    say(catalogue, error, 'popup.needNumber');
    form.elements.to.focus();
    return;
  }
  try { localStorage.setItem(REDIRECT_KEY, to); } catch { /* no storage */ }
  form.querySelector('button').disabled = true;
  try {
    // The card closes by itself when the call's events say it left my phone.
    await pbx.call('redirect', {channel: callerChannel(card.call), toTel: to});
  } catch (failure) {
    say(catalogue, error, 'popup.redirectFailed', {error: `${failure.errCode}: ${failure.message}`});
    form.querySelector('button').disabled = false;
  }
}

function addMissed(call) {
  const when = new Date(call.endedAt || call.startedAt).toLocaleTimeString(catalogue.language);
  const item = document.createElement('li');
  item.dataset.callId = call.callId;
  for (const [name, text] of [['time', when], ['number', call.fromNumber || '?'],
    ['name', call.fromName && call.fromName !== call.fromNumber ? call.fromName : '']]) {
    const part = document.createElement('span');
    part.className = name;
    part.textContent = text;
    item.append(part, ' ');
  }
  $('missed').prepend(item);
  while ($('missed').childElementCount > MAX_MISSED) $('missed').lastElementChild.remove();
}

// --- signing in ------------------------------------------------------------------------

function showState(state) {
  $('state').dataset.state = state;
  say(catalogue, $('state'), {connecting: 'state.connecting', open: 'state.open',
    reconnecting: 'state.reconnecting'}[state] || 'state.closed');
}

async function signIn(event) {
  event.preventDefault();
  sayRaw($('signin-error'), '');
  try {
    // No URL: the server that served this page (ws://HOST/api). Only the password's
    // SHA-1 leaves the page.
    pbx = await connect(null, {login: $('login').value, login2: $('login2').value,
      password: $('password').value, onState: showState});
  } catch (failure) {
    sayRaw($('signin-error'), `${failure.errCode}: ${failure.message}`);
    return;
  }
  showState(pbx.state);
  $('password').value = '';
  $('signin').hidden = true;
  $('desk').hidden = false;
  const extensions = pbx.identity.extensions;
  if (extensions.length) say(catalogue, $('watching'), 'popup.watching', {extensions: extensions.join(', ')});
  else say(catalogue, $('watching'), 'popup.noExtension');
  watchCalls();
}

// The language: the one picked in the console, else the browser's, else English.
let saved = null;
try { saved = localStorage.getItem(LANGUAGE_KEY); } catch { /* no storage */ }
catalogue = await loadCatalogue(chooseLanguage(saved, navigator.languages, ['en', 'ru'], 'en'));
translatePage(catalogue);
$('signin').addEventListener('submit', signIn);
document.documentElement.dataset.ready = 'true';
