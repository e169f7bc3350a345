// The console's Live calls wallboard and Call history table, built on the client's calls
// API: `pbx.calls.watch()` keeps the active calls (re-read from the server on every
// (re)subscription, so a reconnect or a server restart never leaves a stale row) and
// `pbx.calls.history()` pages through the stored ones. Every word shown comes from the
// language's catalogue; numbers, names and channels are the server's, shown as text.
import {callSeconds} from '/client.js';
import {say, sayAttribute, sayRaw} from '/static/i18n.js';
import {element} from '/static/dom.js';

/** How long an ended call stays on the wallboard, fading, before its row goes (ms). */
export const FADE_MS = 5000;
const TICK_MS = 1000;
/** The newest history page is read again after a call ended (the server stores it off
 * the event path, so it may take a moment): this often at most, doubling each time. */
const HISTORY_RETRY_MS = 400;
const HISTORY_RETRIES = 5;
const DEFAULT_PAGE_SIZE = 25;

// Every key written out, so that the catalogue tests find each one used.
const STATUS_KEYS = {
  ringing: 'callStatus.ringing', up: 'callStatus.up', held: 'callStatus.held',
  ended: 'callStatus.ended',
};
const DIRECTION_KEYS = {
  inbound: 'direction.inbound', outbound: 'direction.outbound',
  internal: 'direction.internal', unknown: 'direction.unknown',
};
// Arrows as seen from this office: a call coming in, going out, or staying inside.
const DIRECTION_ICONS = {inbound: '↙', outbound: '↗', internal: '⇄', unknown: '?'};
const END_REASON_KEYS = {
  completed: 'endReason.completed', no_answer: 'endReason.no_answer', busy: 'endReason.busy',
  cancelled: 'endReason.cancelled', failed: 'endReason.failed',
  answered_elsewhere: 'endReason.answered_elsewhere', transferred: 'endReason.transferred',
  unknown: 'endReason.unknown',
};
const TRANSFER_KEYS = {blind: 'transfer.blind', attended: 'transfer.attended'};
const NOTHING = '—';  // an empty value (not a word: the same in every language)

/** 7 -> "0:07", 125 -> "2:05", 3725 -> "1:02:05". */
export function formatDuration(seconds) {
  const whole = Math.max(0, Math.floor(Number(seconds) || 0));
  const hours = Math.floor(whole / 3600);
  const minutes = Math.floor((whole % 3600) / 60);
  const rest = String(whole % 60).padStart(2, '0');
  return hours ? `${hours}:${String(minutes).padStart(2, '0')}:${rest}` : `${minutes}:${rest}`;
}

// --- the parts of a call both tables show ---------------------------------------------

function directionIcon(catalogue, direction) {
  const known = DIRECTION_KEYS[direction] ? direction : 'unknown';
  const icon = element('span', {class: 'direction', role: 'img', dataset: {direction: known},
    text: DIRECTION_ICONS[known]});
  sayAttribute(catalogue, icon, 'aria-label', DIRECTION_KEYS[known]);
  sayAttribute(catalogue, icon, 'title', DIRECTION_KEYS[known]);
  return icon;
}

/** A number on top and, when the PBX gave one that says more, the name below it. */
function party(number, name) {
  const parts = [element('span', {class: 'number', text: number || name || NOTHING})];
  if (name && number && name !== number) parts.push(element('span', {class: 'name', text: name}));
  return parts;
}

function details(catalogue, call, withEnd) {
  const parts = [];
  const add = (key, params) => {
    const item = element('span', {class: 'detail'});
    say(catalogue, item, key, params);
    parts.push(item);
  };
  if (withEnd && call.status === 'ended' && END_REASON_KEYS[call.endReason]) {
    add(END_REASON_KEYS[call.endReason]);
  }
  for (const transfer of call.transfers || []) {
    const key = TRANSFER_KEYS[transfer.type];
    if (key) add(key, {by: transfer.by || '?', to: transfer.to || '?'});
  }
  if (call.originated) add('live.originated');
  if (call.trunk) add('live.trunk', {trunk: call.trunk});
  return parts;
}

/** A table cell that names its column (CSS shows the name when rows become cards). */
function cell(catalogue, columnKey, ...children) {
  const td = element('td', {role: 'cell'}, ...children);
  sayAttribute(catalogue, td, 'data-label', columnKey);
  return td;
}

// --- Live calls --------------------------------------------------------------------------

/**
 * The wallboard. `ui`: {rows, count, empty, note, announce}; `texts`: {catalogue(),
 * describeError(error)}; `onEnded(call)` is told about every call that ends.
 */
export class LiveCallsPanel {
  constructor(ui, texts, onEnded) {
    this.ui = ui;
    this.texts = texts;
    this.onEnded = onEnded;
    this.rows = new Map();  // callId -> {tr, call, duration, ended, timer}
    this.watch = null;
    this.stopGaps = null;
    this.ticker = null;
  }

  /** Show the calls `pbx` sees, kept current until stop(). */
  start(pbx) {
    this.stop();
    this.watch = pbx.calls.watch((calls, event) => this.changed(calls, event));
    this.watch.ready.catch((error) => {
      this.showNote('live.unavailable', {error: this.texts.describeError(error)});
    });
    this.stopGaps = pbx.onGap((detail) => {
      // The watch has already read the calls again; say so, since some events (and so
      // some short calls) were never seen.
      if (detail.subscriptions.some((sub) => sub.name === 'call.*')) {
        const time = new Date(detail.at).toLocaleTimeString(this.texts.catalogue().language);
        this.showNote('live.reread', {time});
      }
    });
    this.ticker = setInterval(() => this.tick(), TICK_MS);
    this.updateCount();
  }

  /** Stop watching and empty the board (signing out). */
  stop() {
    if (this.watch) this.watch.stop();
    if (this.stopGaps) this.stopGaps();
    clearInterval(this.ticker);
    this.watch = this.stopGaps = this.ticker = null;
    for (const row of this.rows.values()) clearTimeout(row.timer);
    this.rows.clear();
    this.ui.rows.replaceChildren();
    this.ui.note.hidden = true;
    this.updateCount();
  }

  changed(calls, event) {
    if (event === null) {
      // Read again from the server: what it no longer lists ended while we were away.
      for (const [callId, row] of this.rows) {
        if (!row.ended && !calls.has(callId)) this.fade(row);
      }
      for (const call of calls.values()) this.show(call);
    } else if (event.name !== 'call.missed') {  // a missed call has ended already
      const row = this.show(calls.get(event.callId) || event);
      if (event.status === 'ended') {
        this.fade(row);
        if (this.onEnded) this.onEnded(event);
      }
      if (event.name === 'call.ringing') this.announce(event);
    }
    this.updateCount();
  }

  show(call) {
    let row = this.rows.get(call.callId);
    if (!row) {
      row = {tr: element('tr', {role: 'row', dataset: {callId: call.callId}}), call,
        duration: null, ended: false, timer: null};
      this.rows.set(call.callId, row);
      this.ui.rows.append(row.tr);
    }
    if (row.ended) return row;  // an ended row only fades
    row.call = call;
    this.render(row);
    return row;
  }

  render(row) {
    const catalogue = this.texts.catalogue();
    const call = row.call;
    const state = element('span', {class: 'badge', dataset: {status: call.status}});
    say(catalogue, state, STATUS_KEYS[call.status] || 'callStatus.up');
    row.duration = element('span', {class: 'duration'});
    row.tr.dataset.status = call.status;
    row.tr.dataset.direction = call.direction;
    row.tr.replaceChildren(
      cell(catalogue, 'column.direction', directionIcon(catalogue, call.direction)),
      cell(catalogue, 'column.state', state),
      cell(catalogue, 'column.from', ...party(call.fromNumber, call.fromName)),
      cell(catalogue, 'column.to', ...party(call.toNumber, call.toName)),
      cell(catalogue, 'column.extension', element('span', {class: 'number',
        text: call.extension || NOTHING})),
      cell(catalogue, 'column.duration', row.duration),
      cell(catalogue, 'column.details', ...details(catalogue, call, true)));
    this.showDuration(row);
  }

  /** Ring time while it rings, talk time once answered: counted on by callSeconds(). */
  showDuration(row) {
    const call = row.call;
    const seconds = callSeconds(call);
    const talking = call.status === 'up' || call.status === 'held' ||
      (call.status === 'ended' && call.answeredAt !== null);
    say(this.texts.catalogue(), row.duration, talking ? 'live.talkTime' : 'live.ringTime',
      {time: formatDuration(talking ? seconds.talkSeconds : seconds.ringSeconds)});
  }

  tick() {
    for (const row of this.rows.values()) if (!row.ended) this.showDuration(row);
  }

  /** An ended call stays in place for FADE_MS, fading (CSS), then its row goes. */
  fade(row) {
    if (row.ended) return;
    if (row.call.status !== 'ended') {
      // It vanished without an event we saw (a re-read): show it as ended all the same.
      row.call = {...row.call, status: 'ended'};
      this.render(row);
    }
    row.ended = true;
    row.tr.classList.add('ending');
    row.timer = setTimeout(() => {
      row.tr.remove();
      if (this.rows.get(row.call.callId) === row) this.rows.delete(row.call.callId);
      this.updateCount();
    }, FADE_MS);
  }

  announce(call) {
    say(this.texts.catalogue(), this.ui.announce, 'live.announceRinging',
      {from: call.fromNumber || call.fromName || NOTHING, extension: call.extension || NOTHING});
  }

  showNote(key, params) {
    this.ui.note.hidden = false;
    say(this.texts.catalogue(), this.ui.note, key, params);
  }

  updateCount() {
    const active = [...this.rows.values()].filter((row) => !row.ended).length;
    say(this.texts.catalogue(), this.ui.count, 'live.count', {count: active});
    this.ui.empty.hidden = this.rows.size > 0;
  }
}

// --- Call history ------------------------------------------------------------------------

/** A filter the form cannot send, with the catalogue key that says why. */
class FilterError extends Error {
  constructor(input, key) {
    super(key);
    this.input = input;
    this.key = key;
  }
}

/** A date input's day (YYYY-MM-DD) at local midnight, `days` later; null when empty. */
function localMidnight(value, days) {
  if (!value) return null;
  const [year, month, day] = value.split('-').map(Number);
  return new Date(year, month - 1, day + days);
}

/**
 * The history table with its filters and "Load more". `ui`: {form, controls, extension,
 * number, direction, reason, since, until, limit, reset, error, status, rows, more};
 * `texts` as for LiveCallsPanel.
 */
export class CallHistoryPanel {
  constructor(ui, texts) {
    this.ui = ui;
    this.texts = texts;
    this.pbx = null;
    this.query = null;         // the query of the rows shown
    this.page = null;          // the last page read (its more() reads the next)
    this.shown = new Set();    // callIds in the table
    this.generation = 0;       // a new search makes every answer still on its way stale
    this.shownGeneration = 0;  // the search whose rows are shown (older: one is on its way)
    this.awaited = new Set();  // calls that ended and are not in the table yet
    this.retry = null;
    this.attempts = 0;
    ui.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.search();
    });
    ui.reset.addEventListener('click', () => {
      ui.form.reset();
      this.search();
    });
    ui.more.addEventListener('click', () => this.more());
  }

  start(pbx) {
    this.pbx = pbx;
    this.ui.controls.disabled = false;
    this.search();
  }

  stop() {
    this.pbx = null;
    this.generation += 1;
    this.ui.controls.disabled = true;
    clearTimeout(this.retry);
    this.retry = null;
    this.awaited.clear();
    this.clear();
    sayRaw(this.ui.status, '');
    sayRaw(this.ui.error, '');
  }

  clear() {
    this.shown.clear();
    this.page = null;
    this.ui.rows.replaceChildren();
    this.ui.more.hidden = true;
  }

  readFilters() {
    const ui = this.ui;
    const limitText = ui.limit.value.trim();
    const limit = limitText === '' ? DEFAULT_PAGE_SIZE : Number(limitText);
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) {
      throw new FilterError(ui.limit, 'history.badLimit');
    }
    const since = localMidnight(ui.since.value, 0);
    const until = localMidnight(ui.until.value, 1);  // the "to" day is included
    if (since && until && since >= until) throw new FilterError(ui.until, 'history.badRange');
    // Blank fields are left out by the client: they mean "any".
    return {extension: ui.extension.value.trim(), number: ui.number.value.trim(),
      direction: ui.direction.value, endReason: ui.reason.value, since, until, limit};
  }

  /** Read the first page of what the filters ask for. */
  async search() {
    if (!this.pbx) return;
    sayRaw(this.ui.error, '');
    let query;
    try {
      query = this.readFilters();
    } catch (error) {
      if (!(error instanceof FilterError)) throw error;
      say(this.texts.catalogue(), this.ui.error, error.key);
      error.input.focus();
      return;
    }
    const generation = ++this.generation;
    say(this.texts.catalogue(), this.ui.status, 'history.loading');
    let page;
    try {
      page = await this.pbx.calls.history(query);
    } catch (error) {
      if (generation === this.generation) this.failed(error);
      return;
    }
    if (generation !== this.generation) return;
    this.clear();
    this.shownGeneration = generation;
    this.query = query;
    this.page = page;
    this.append(page.calls);
    this.showStatus();
  }

  /** The next page, below the rows shown. */
  async more() {
    const page = this.page;
    if (!page || !page.next) return;
    const generation = this.generation;
    this.ui.more.disabled = true;
    try {
      const next = await page.more();
      if (generation !== this.generation || next === null) return;
      this.page = next;
      this.append(next.calls);
      this.showStatus();
    } catch (error) {
      if (generation === this.generation) this.failed(error);
    } finally {
      this.ui.more.disabled = false;
    }
  }

  failed(error) {
    say(this.texts.catalogue(), this.ui.error, 'history.failed',
      {error: this.texts.describeError(error)});
    this.showStatus();
  }

  /**
   * A call just ended (seen on the wallboard): show it here once the server has stored
   * it, by reading the newest page again a few times, and slotting new rows in by time.
   */
  callEnded(call) {
    if (!this.pbx || !this.query) return;
    this.awaited.add(call.callId);
    this.attempts = 0;
    this.scheduleRefresh();
  }

  scheduleRefresh() {
    if (this.retry !== null) return;
    const delay = HISTORY_RETRY_MS * 2 ** this.attempts;
    this.retry = setTimeout(() => {
      this.retry = null;
      this.refreshNewest();
    }, delay);
  }

  async refreshNewest() {
    if (!this.pbx || !this.query) return;
    const generation = this.generation;
    let page = null;
    // While a search is on its way, this.query and the rows are about to be replaced (its
    // answer reads the newest calls itself): reading the old query now could slot rows
    // of it into the new table, so this attempt only schedules the next.
    if (this.shownGeneration === generation) {
      try {
        page = await this.pbx.calls.history(this.query);
      } catch {
        page = null;  // tried again below, like a call not stored yet
      }
      if (generation !== this.generation) return;
    }
    if (page) {
      for (const call of page.calls) {
        this.awaited.delete(call.callId);
        if (!this.shown.has(call.callId)) this.insert(call);
      }
      this.showStatus();
    }
    this.attempts += 1;
    if (this.awaited.size && this.attempts < HISTORY_RETRIES) this.scheduleRefresh();
    else this.awaited.clear();  // not stored, or not what the filters ask for
  }

  append(calls) {
    for (const call of calls) {
      if (this.shown.has(call.callId)) continue;  // slotted in already by refreshNewest
      this.shown.add(call.callId);
      this.ui.rows.append(this.row(call));
    }
  }

  /** A newer call in its place: the table is newest first, by start time. */
  insert(call) {
    this.shown.add(call.callId);
    const tr = this.row(call);
    const after = [...this.ui.rows.children].find((other) => other.dataset.startedAt < call.startedAt);
    this.ui.rows.insertBefore(tr, after || null);
  }

  row(call) {
    const catalogue = this.texts.catalogue();
    const started = element('time', {dateTime: call.startedAt, text: this.when(call.startedAt)});
    const result = element('span', {class: 'result', dataset: {endReason: call.endReason || ''}});
    if (END_REASON_KEYS[call.endReason]) say(catalogue, result, END_REASON_KEYS[call.endReason]);
    const seconds = (value) => element('span', {class: 'duration', text: formatDuration(value)});
    return element('tr', {role: 'row', dataset: {callId: call.callId, startedAt: call.startedAt,
      direction: call.direction, endReason: call.endReason || ''}},
    cell(catalogue, 'column.started', started),
    cell(catalogue, 'column.direction', directionIcon(catalogue, call.direction)),
    cell(catalogue, 'column.from', ...party(call.fromNumber, call.fromName)),
    cell(catalogue, 'column.to', ...party(call.toNumber, call.toName)),
    cell(catalogue, 'column.extension', element('span', {class: 'number',
      text: call.extension || NOTHING})),
    cell(catalogue, 'column.ring', seconds(call.ringSeconds)),
    cell(catalogue, 'column.talk', seconds(call.talkSeconds)),
    cell(catalogue, 'column.result', result),
    cell(catalogue, 'column.details', ...details(catalogue, call, false)));
  }

  when(iso) {
    const format = new Intl.DateTimeFormat(this.texts.catalogue().language,
      {dateStyle: 'short', timeStyle: 'medium'});
    return format.format(new Date(iso));
  }

  /** After a language switch: dates are written the new language's way. */
  relocalise() {
    for (const time of this.ui.rows.querySelectorAll('time')) {
      time.textContent = this.when(time.dateTime);
    }
  }

  showStatus() {
    const count = this.shown.size;
    const more = Boolean(this.page && this.page.next);
    this.ui.more.hidden = !more;
    if (!count) say(this.texts.catalogue(), this.ui.status, 'history.none');
    else say(this.texts.catalogue(), this.ui.status, more ? 'history.shownMore' : 'history.shown', {count});
  }
}
