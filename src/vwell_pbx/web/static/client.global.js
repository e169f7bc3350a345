/*! vwell-pbx-srv browser client. No dependencies; current browsers.
 *
 * This file is the plain-<script> build AND the source of the ES module: it assigns
 * `globalThis.VwellPbx`; /client.js is a two-line ES module that imports it and
 * re-exports that object. Types: /client.d.ts.
 *
 *   const pbx = await VwellPbx.connect('ws://127.0.0.1:8931/api',
 *                                      {login: 'Agent', login2: 'Иванов И.И.', password: 'demo'});
 *   const answer = await pbx.call('dial', {from: '269', to: '+7 100 200 30 40'});
 *   const off = pbx.on('Newchannel', {CallerIDNum: '+7978*'}, (event) => console.log(event));
 *   off();  // unsubscribe
 *   pbx.onGap((gap) => reloadCalls());  // events may have been missed while reconnecting
 *   pbx.calls.on('ringing', {extension: '269'}, (call) => popUp(call));  // the CRM pop-up
 *   const watch = pbx.calls.watch((calls) => render(calls));  // active calls, kept current
 */
(function (root) {
  'use strict';

  var DEFAULTS = {
    timeout: 30000,          // ms a call() waits for its answer
    connectTimeout: 10000,   // ms for the WebSocket to open and the login to be answered
    reconnect: true,
    backoff: {initial: 250, max: 15000, factor: 2, jitter: 0.5},
  };

  // The request that proves a login: whoami needs no PBX, changes nothing, is open to
  // every role, and says who we are (kept as client.identity).
  var AUTH_PROBE = 'whoami';

  /** An error answer (err !== null) or a client-side failure; `errCode` says which. */
  class PbxError extends Error {
    constructor(message, errCode, response) {
      super(message);
      this.name = 'PbxError';
      this.errCode = errCode;
      this.response = response === undefined ? null : response;
    }
  }

  /** Hex SHA-1 of a UTF-8 string with Web Crypto (secure contexts only: https, localhost). */
  async function sha1Hex(text) {
    var subtle = root.crypto && root.crypto.subtle;
    if (!subtle) {
      throw new PbxError('Web Crypto (crypto.subtle) is not available on this page: it is not a ' +
        'secure context (use https, or http://localhost / 127.0.0.1), so pass {sha1} instead ' +
        'of {password}', 'insecure_context');
    }
    var digest = await subtle.digest('SHA-1', new TextEncoder().encode(String(text)));
    return Array.from(new Uint8Array(digest), function (b) {
      return b.toString(16).padStart(2, '0');
    }).join('');
  }

  // --- event filters, the same rules as the server (src/vwell_pbx/events/filters.py) --

  /** The string a JSON scalar compares as (JavaScript's String()), or null. */
  function scalarText(value) {
    if (typeof value === 'string') return value;
    if (typeof value === 'boolean') return value ? 'true' : 'false';
    if (typeof value === 'number') return Number.isFinite(value) ? String(value) : null;
    return null;
  }

  /** A lowercased pattern: null = anything, a string = exact, an array = split on '*'. */
  function compilePattern(text) {
    var lowered = text.toLowerCase();
    if (lowered.indexOf('*') < 0) return lowered;
    if (lowered.replace(/\*/g, '') === '') return null;
    var parts = lowered.split('*');
    var segments = [parts[0]];
    for (var i = 1; i < parts.length - 1; i++) if (parts[i]) segments.push(parts[i]);
    segments.push(parts[parts.length - 1]);
    return segments;
  }

  function globMatch(glob, text) {
    var first = glob[0];
    var last = glob[glob.length - 1];
    if (text.length < first.length + last.length) return false;
    if (!text.startsWith(first) || !text.endsWith(last)) return false;
    var position = first.length;
    var end = text.length - last.length;
    for (var i = 1; i < glob.length - 1; i++) {
      var found = text.slice(0, end).indexOf(glob[i], position);
      if (found < 0) return false;
      position = found + glob[i].length;
    }
    return true;
  }

  function patternMatches(pattern, text) {
    if (pattern === null) return true;
    if (typeof pattern === 'string') return pattern === text;
    return globMatch(pattern, text);
  }

  /**
   * Compile a subscription: `name` (case-insensitive, '*' wildcards; empty or '*' = every
   * event) and field filters (value, list = any of, '*' wildcards; keys case-insensitive).
   * Returns a predicate over pushed events.
   */
  function compileFilter(name, filters) {
    var namePattern = compilePattern(name ? String(name) : '*');
    var tests = Object.keys(filters || {}).map(function (key) {
      var raw = filters[key];
      var items = Array.isArray(raw) ? raw : [raw];
      var patterns = items.map(function (item) {
        var text = scalarText(item);
        if (text === null) {
          throw new PbxError('filter ' + key + ' must be a string, number, boolean or a list ' +
            'of them', 'bad_request');
        }
        return compilePattern(text);
      });
      return {key: key.toLowerCase(), patterns: patterns};
    });
    return function (event) {
      var eventName = typeof event.name === 'string' ? event.name.toLowerCase() : '';
      if (!patternMatches(namePattern, eventName)) return false;
      if (!tests.length) return true;
      var lowered = {};
      Object.keys(event).forEach(function (k) {
        var lk = k.toLowerCase();
        if (!(lk in lowered)) lowered[lk] = event[k];
      });
      return tests.every(function (test) {
        if (!(test.key in lowered)) return false;
        var value = lowered[test.key];
        var values = Array.isArray(value) ? value : [value];
        return values.some(function (v) {
          var text = scalarText(v);
          if (text === null) return false;
          text = text.toLowerCase();
          return test.patterns.some(function (p) { return patternMatches(p, text); });
        });
      });
    };
  }

  /** Whether a pushed event matches {name, ...filters}, as the server decides it. */
  function matches(spec, event) {
    var parts = splitSpec(spec, undefined);
    return compileFilter(parts.name, parts.filters)(event);
  }

  function splitSpec(nameOrSpec, filters) {
    if (nameOrSpec !== null && typeof nameOrSpec === 'object') {
      var rest = {};
      var name = '';
      Object.keys(nameOrSpec).forEach(function (k) {
        if (k.toLowerCase() === 'name') name = nameOrSpec[k];
        else rest[k] = nameOrSpec[k];
      });
      return {name: name || '', filters: Object.assign(rest, filters || {})};
    }
    return {name: nameOrSpec == null ? '' : String(nameOrSpec), filters: filters || {}};
  }

  function defaultUrl() {
    var loc = root.location;
    if (!loc || !loc.host) throw new PbxError('a server URL is required', 'bad_request');
    return (loc.protocol === 'https:' ? 'wss://' : 'ws://') + loc.host + '/api';
  }

  function isAnswer(message) {
    // Answers always carry both keys; pushed events never do.
    return message !== null && typeof message === 'object' &&
      Object.prototype.hasOwnProperty.call(message, 'err') &&
      Object.prototype.hasOwnProperty.call(message, 'errCode');
  }

  function answerError(answer) {
    return new PbxError(String(answer.err), answer.errCode || 'internal', answer);
  }

  // --- the connection ------------------------------------------------------------------

  var clientIds = 0;

  class Client {
    constructor(url, credentials, options) {
      this.url = url;
      this._credentials = credentials;  // {login, login2, sha1}; never the password
      this._options = options;
      this._WebSocket = options.WebSocket || root.WebSocket;
      this._id = ++clientIds;
      this._seq = 0;
      this._ws = null;
      this._state = null;             // set to 'connecting' by connect()
      this._opening = false;          // true while _open() runs: it handles its own failures
      this._pending = new Map();      // reqId -> {resolve, reject, timer}
      this._subs = new Map();         // local id -> subscription
      this._stateHandlers = new Set();
      this._gapHandlers = new Set();
      this._gaps = [];                // subscriptions whose resume reported gap: true
      this._waiters = new Set();      // calls waiting for the connection to open
      this._attempt = 0;
      this._retryTimer = null;
      this._closed = false;
      this.lastError = null;
      /** The whoami answer of the last login (login, login2, role, methods, ...). */
      this.identity = null;
      /** Calls: active(), history(), pages(), on(), watch() (see CallsApi). */
      this.calls = new CallsApi(this);
    }

    /** 'connecting' | 'open' | 'reconnecting' | 'closed'. */
    get state() { return this._state || 'connecting'; }

    /** Number of local subscriptions (handlers) in force. */
    get subscriptions() { return this._subs.size; }

    /** Call `cb(state, detail)` on every state change; returns a function that stops it. */
    onState(cb) {
      var handlers = this._stateHandlers;
      handlers.add(cb);
      return function () { handlers.delete(cb); };
    }

    /**
     * Call `cb(detail)` when, after a reconnect, the server could not replay everything
     * missed (it restarted, or the client was away too long): detail.subscriptions
     * lists {name, filters, since} of those concerned. Re-read state then (e.g. call
     * 'calls'). Returns a function that stops it.
     */
    onGap(cb) {
      var handlers = this._gapHandlers;
      handlers.add(cb);
      return function () { handlers.delete(cb); };
    }

    // After a reconnect: tell the gap handlers, once, about every resume with a gap.
    _reportGaps() {
      var gaps = this._gaps;
      this._gaps = [];
      if (!gaps.length) return;
      var detail = {subscriptions: gaps, at: new Date().toISOString()};
      this._gapHandlers.forEach(function (cb) {
        try { cb(detail); } catch (e) { setTimeout(function () { throw e; }); }
      });
    }

    _setState(state, detail) {
      if (this._state === state && state !== 'reconnecting') return;
      this._state = state;
      var info = Object.assign({state: state, attempt: this._attempt, error: this.lastError},
        detail || {});
      this._stateHandlers.forEach(function (cb) {
        try { cb(state, info); } catch (e) { setTimeout(function () { throw e; }); }
      });
      if (state === 'open' || state === 'closed') {
        var waiters = Array.from(this._waiters);
        this._waiters.clear();
        waiters.forEach(function (w) { w(state); });
      }
    }

    _nextReqId() {
      this._seq += 1;
      return 'vw' + this._id + '-' + this._seq;
    }

    // Open a socket, log in, and (on a reconnect) subscribe again. Rejects on failure.
    async _open() {
      this._opening = true;
      try {
        return await this._openOnce();
      } finally {
        this._opening = false;
      }
    }

    async _openOnce() {
      var self = this;
      this._gaps = [];  // only this connection's resumes count
      var ws = await new Promise(function (resolve, reject) {
        var socket;
        try {
          socket = new self._WebSocket(self.url);
        } catch (e) {
          reject(new PbxError('cannot open ' + self.url + ': ' + e.message, 'connect_failed'));
          return;
        }
        var timer = setTimeout(function () {
          cleanup();
          try { socket.close(); } catch (e) { /* already closing */ }
          reject(new PbxError('no connection to ' + self.url + ' within ' +
            self._options.connectTimeout + ' ms', 'connect_failed'));
        }, self._options.connectTimeout);
        function cleanup() {
          clearTimeout(timer);
          socket.removeEventListener('open', onOpen);
          socket.removeEventListener('close', onClose);
        }
        function onOpen() { cleanup(); socket.binaryType = 'arraybuffer'; resolve(socket); }
        function onClose(ev) {
          cleanup();
          reject(new PbxError('cannot connect to ' + self.url + ' (close code ' + ev.code + ')',
            'connect_failed'));
        }
        socket.addEventListener('open', onOpen);
        socket.addEventListener('close', onClose);
      });
      if (this._closed) { ws.close(1000); throw new PbxError('client closed', 'closed'); }
      this._ws = ws;
      ws.addEventListener('message', function (ev) { self._onMessage(ws, ev.data); });
      ws.addEventListener('close', function (ev) { self._onClose(ws, ev); });
      try {
        var me = await this._request(AUTH_PROBE, Object.assign({}, this._credentials),
          this._options.connectTimeout);
        delete me.err; delete me.errCode; delete me.reqId;
        this.identity = me;
      } catch (e) {
        this._ws = null;
        try { ws.close(1000); } catch (ignored) { /* closing anyway */ }
        throw e;
      }
      var subs = Array.from(this._subs.values());
      try {
        await Promise.all(subs.map(function (sub) {
          return self._serverSubscribe(sub).catch(function (error) {
            if (self._closed || error.errCode === 'disconnected' ||
                error.errCode === 'request_timeout') {
              throw error;  // the new connection failed too (or close()): not the server's no
            }
            // The server refuses it now (its rules changed): drop it, keep the rest.
            self._subs.delete(sub.id);
            sub.error = error;
            if (sub.onClosed) sub.onClosed(error);
          });
        }));
      } catch (e) {
        // Retried on a new socket: this one (still open after a timeout) must not linger.
        if (this._ws === ws) this._ws = null;
        try { ws.close(1000); } catch (ignored) { /* closing anyway */ }
        throw e;
      }
      return ws;
    }

    _onMessage(ws, data) {
      if (ws !== this._ws) return;
      var message;
      try {
        message = JSON.parse(typeof data === 'string' ? data : new TextDecoder().decode(data));
      } catch (e) {
        return;  // not JSON: nothing this client can do with it
      }
      if (isAnswer(message)) {
        var pending = this._pending.get(message.reqId);
        if (pending) {
          this._pending.delete(message.reqId);
          clearTimeout(pending.timer);
          if (message.err === null) pending.resolve(message);
          else pending.reject(answerError(message));
        }
        return;
      }
      this._dispatch(message);
    }

    // A pushed event goes to every subscription that matches it and that the server
    // confirmed on this connection: what was published before a subscription's answer
    // is either in that answer's replay or was seen before the reconnect.
    _dispatch(event) {
      var self = this;
      Array.from(this._subs.values()).forEach(function (sub) {
        if (sub.serverId === null || !self._subs.has(sub.id) || !sub.test(event)) return;
        self._deliver(sub, event);
      });
    }

    _deliver(sub, event) {
      if (typeof event.eventId === 'string') sub.lastEventId = event.eventId;
      if (sub.once) {
        sub.firedOnce = true;  // the server ended its onceEvent itself: no rmEvent
        this._remove(sub);
      }
      try {
        sub.handler(event);
      } catch (e) {
        setTimeout(function () { throw e; });  // a handler's bug must not stop the others
      }
    }

    _onClose(ws, ev) {
      if (ws !== this._ws) return;
      this._ws = null;
      var error = new PbxError('the connection closed (code ' + ev.code +
        (ev.reason ? ', ' + ev.reason : '') + ')', 'disconnected');
      this.lastError = error;
      this._rejectPending(error);
      this._subs.forEach(function (sub) { sub.serverId = null; });
      if (this._closed || this._opening) return;  // _open()'s caller decides what follows
      if (!this._options.reconnect) {
        this._finish(error);
        return;
      }
      this._scheduleReconnect();
    }

    _rejectPending(error) {
      var pending = Array.from(this._pending.values());
      this._pending.clear();
      pending.forEach(function (p) { clearTimeout(p.timer); p.reject(error); });
    }

    _delay() {
      var b = this._options.backoff;
      var base = Math.min(b.max, b.initial * Math.pow(b.factor, Math.max(0, this._attempt - 1)));
      // Jitter spreads many clients' reconnects after a server restart.
      return Math.round(base * (1 - b.jitter * Math.random()));
    }

    _scheduleReconnect() {
      var self = this;
      this._attempt += 1;
      var delay = this._delay();
      this._setState('reconnecting', {delay: delay});
      this._retryTimer = setTimeout(function () {
        self._retryTimer = null;
        if (self._closed) return;
        self._open().then(function () {
          if (self._closed) return;  // close() was called while it was opening
          self._attempt = 0;
          self.lastError = null;
          self._setState('open');
          self._reportGaps();
        }, function (error) {
          if (self._closed) return;
          self.lastError = error;
          if (error.errCode === 'auth_failed') {
            self._finish(error);  // retrying wrong credentials only earns throttling
            return;
          }
          self._scheduleReconnect();
        });
      }, delay);
    }

    _finish(error) {
      this._closed = true;
      this.lastError = error || null;
      if (this._retryTimer !== null) { clearTimeout(this._retryTimer); this._retryTimer = null; }
      var closedError = new PbxError('the client is closed', 'closed');
      this._rejectPending(error || closedError);
      var subs = Array.from(this._subs.values());
      this._subs.clear();
      subs.forEach(function (sub) { if (sub.onClosed) sub.onClosed(closedError); });
      this._setState('closed', {error: this.lastError});
    }

    _request(method, argument, timeout) {
      var self = this;
      var ws = this._ws;
      return new Promise(function (resolve, reject) {
        if (!ws || ws.readyState !== 1) {
          reject(new PbxError('not connected', 'disconnected'));
          return;
        }
        var reqId = self._nextReqId();
        var timer = setTimeout(function () {
          self._pending.delete(reqId);
          reject(new PbxError(method + ': no answer within ' + timeout + ' ms',
            'request_timeout'));
        }, timeout);
        self._pending.set(reqId, {resolve: resolve, reject: reject, timer: timer});
        var argumentWithId = Object.assign({}, argument, {reqId: reqId});
        try {
          ws.send(JSON.stringify({method: method, argument: argumentWithId}));
        } catch (e) {
          self._pending.delete(reqId);
          clearTimeout(timer);
          reject(new PbxError('cannot send: ' + e.message, 'disconnected'));
        }
      });
    }

    // Wait until the connection is open (or closed), at most `ms` (Infinity: no limit).
    _whenOpen(ms) {
      var self = this;
      if (this._state === 'open' && this._ws) return Promise.resolve();
      if (this._closed) return Promise.reject(new PbxError('the client is closed', 'closed'));
      return new Promise(function (resolve, reject) {
        var timer = ms === Infinity ? null : setTimeout(function () {
          self._waiters.delete(waiter);
          reject(new PbxError('not connected within ' + ms + ' ms', 'disconnected'));
        }, ms);
        function waiter(state) {
          clearTimeout(timer);
          if (state === 'open') resolve();
          else reject(new PbxError('the client is closed', 'closed'));
        }
        self._waiters.add(waiter);
      });
    }

    /**
     * Call an API method. Resolves with the answer (err === null); rejects with a
     * PbxError whose errCode is the server's, or 'disconnected', 'request_timeout',
     * 'closed'. While reconnecting, the call waits for the connection (within its timeout).
     */
    async call(method, args, options) {
      var timeout = (options && options.timeout) || this._options.timeout;
      var started = Date.now();
      await this._whenOpen(timeout);
      var left = Math.max(1, timeout - (Date.now() - started));
      return this._request(method, args || {}, left);
    }

    // Subscribe on the server; after a reconnect with `since` (the last eventId this
    // subscription saw), so the answer replays what it missed (`events`) and says
    // whether something may be lost anyway (`gap`).
    _serverSubscribe(sub) {
      var self = this;
      var argument = Object.keys(sub.filters).length
        ? {event: Object.assign({name: sub.name || '*'}, sub.filters)}
        : {name: sub.name || '*'};
      var since = sub.lastEventId;
      if (since !== null) argument.since = since;
      return this._request(sub.once ? 'onceEvent' : 'onEvent', argument, this._options.timeout)
        .then(function (answer) {
          if (!self._subs.has(sub.id)) {
            // Unsubscribed (or a once already fired) while the request was on its way.
            self._request('rmEvent', {subscriptionId: answer.subscriptionId},
              self._options.timeout).catch(function () { /* gone with the connection */ });
            return answer.subscriptionId;
          }
          // Runs before the next message is handled (a promise reaction), so the
          // replay comes before every live event, as the server sent them.
          sub.serverId = answer.subscriptionId;
          if (answer.gap === true) {
            self._gaps.push({name: sub.name || '*', filters: sub.filters, since: since});
          }
          var replayed = Array.isArray(answer.events) ? answer.events : [];
          for (var i = 0; i < replayed.length && self._subs.has(sub.id); i++) {
            self._deliver(sub, replayed[i]);
          }
          if (typeof answer.lastEventId === 'string' && self._subs.has(sub.id)) {
            sub.lastEventId = answer.lastEventId;  // every later match comes live
          }
          // After the replay: the answer's own data (a call.* subscription's `calls`)
          // is as of now, newer than every replayed event.
          if (sub.onAnswer && self._subs.has(sub.id)) {
            try {
              sub.onAnswer(answer);
            } catch (e) {
              setTimeout(function () { throw e; });
            }
          }
          return answer.subscriptionId;
        });
    }

    _remove(sub) {
      if (!this._subs.delete(sub.id)) return Promise.resolve(0);
      var serverId = sub.serverId;
      sub.serverId = null;
      if (serverId === null || !this._ws || sub.firedOnce) return Promise.resolve(0);
      return this._request('rmEvent', {subscriptionId: serverId}, this._options.timeout)
        .then(function (answer) { return answer.removed; },
          function () { return 0; });  // the connection went away: nothing left to remove
    }

    // onAnswer(answer), if given, sees every answer of the server's subscription (the
    // first one and each after a reconnect), after the replayed events were delivered.
    _subscribe(nameOrSpec, filters, handler, once, onAnswer) {
      var spec = splitSpec(nameOrSpec, filters);
      var self = this;
      var sub = {
        id: ++this._seq, name: spec.name, filters: spec.filters, once: once, handler: handler,
        test: compileFilter(spec.name, spec.filters), serverId: null, onClosed: null,
        firedOnce: false, error: null, lastEventId: null, onAnswer: onAnswer || null,
      };
      if (this._closed) throw new PbxError('the client is closed', 'closed');
      this._subs.set(sub.id, sub);
      var unsubscribe = function () { return self._remove(sub); };
      var ready;
      if (this._state === 'open' && this._ws) {
        ready = this._serverSubscribe(sub);
      } else {
        // It is sent with the others when the connection opens again, however long
        // that takes; it only fails if the client is closed meanwhile.
        ready = this._whenOpen(Infinity).then(function () {
          if (sub.error) throw sub.error;
          return sub.serverId;
        });
      }
      ready = ready.catch(function (error) {
        self._subs.delete(sub.id);
        throw error;
      });
      ready.catch(function () { /* reported through .ready; not an unhandled rejection */ });
      unsubscribe.ready = ready;
      unsubscribe.sub = sub;
      // The server's current id: it changes on every reconnect (null in between).
      Object.defineProperty(unsubscribe, 'subscriptionId', {get: function () {
        return sub.serverId;
      }});
      // The eventId it is up to date with (what it resumes from after a reconnect).
      Object.defineProperty(unsubscribe, 'lastEventId', {get: function () {
        return sub.lastEventId;
      }});
      return unsubscribe;
    }

    /**
     * Subscribe: `on(name, [filters], handler)` or `on({name, ...filters}, handler)`.
     * Returns an unsubscribe function (it returns a promise of how many server
     * subscriptions it removed); its `.ready` promise resolves once the server confirmed,
     * or rejects with the server's error (the subscription is then dropped).
     */
    on(nameOrSpec, filters, handler) {
      if (typeof filters === 'function') { handler = filters; filters = undefined; }
      if (typeof handler !== 'function') throw new TypeError('on(): a handler is required');
      return this._subscribe(nameOrSpec, filters, handler, false);
    }

    /**
     * One matching event: `once(name, [filters])` returns a promise of the event;
     * `once(name, [filters], handler)` returns an unsubscribe function like on().
     */
    once(nameOrSpec, filters, handler) {
      if (typeof filters === 'function') { handler = filters; filters = undefined; }
      if (typeof handler === 'function') {
        return this._subscribe(nameOrSpec, filters, handler, true);
      }
      var self = this;
      return new Promise(function (resolve, reject) {
        var off = self._subscribe(nameOrSpec, filters, resolve, true);
        off.sub.onClosed = reject;
        off.ready.catch(reject);
      });
    }

    /** Remove every subscription of this client. */
    async offAll() {
      var subs = Array.from(this._subs.values());
      var self = this;
      var removed = await Promise.all(subs.map(function (sub) { return self._remove(sub); }));
      return removed.reduce(function (a, b) { return a + b; }, 0);
    }

    /** Close for good: pending calls reject with errCode 'closed'; no reconnect. */
    close() {
      if (this._closed) return;
      var ws = this._ws;
      this._ws = null;
      this._finish(null);
      if (ws) { try { ws.close(1000, 'client closed'); } catch (e) { /* closing anyway */ } }
    }
  }

  // --- calls: the server's call model (call.* events, `calls`, `callHistory`) -----------

  /** The call event kinds `calls.on()` takes; each is the event `call.` + kind. */
  var CALL_EVENT_KINDS = Object.freeze(['ringing', 'answered', 'held', 'resumed',
    'transferred', 'updated', 'ended', 'missed']);

  // When (this page's monotonic clock, ms) each call object the calls API handed out was
  // received: callSeconds() counts on from there, so the page's clock never has to agree
  // with the server's. A WeakMap: the objects stay the caller's, nothing is added to them.
  var receivedAt = new WeakMap();

  function monotonicMs() {
    var perf = root.performance;
    return perf && typeof perf.now === 'function' ? perf.now() : Date.now();
  }

  function received(call, at) {
    if (call !== null && typeof call === 'object') receivedAt.set(call, at);
    return call;
  }

  /**
   * A call's ring and talk seconds now: its `ringSeconds`/`talkSeconds` as the server
   * counted them when it sent the object, plus the time since this client received it,
   * added to the ring time while the call rings and to the talk time once it is
   * answered (holds included). An ended call, or an object the calls API did not hand
   * out (a copy, a history row), keeps its own values.
   */
  function callSeconds(call) {
    var ring = Number(call && call.ringSeconds) || 0;
    var talk = Number(call && call.talkSeconds) || 0;
    var at = call ? receivedAt.get(call) : undefined;
    if (at !== undefined && call.status !== 'ended') {
      var since = Math.max(0, (monotonicMs() - at) / 1000);
      if (call.status === 'ringing') ring += since;
      else talk += since;
    }
    return {ringSeconds: ring, talkSeconds: talk};
  }

  /** 'ringing' or 'call.ringing' -> 'call.ringing'; '*' -> 'call.*'; else bad_request. */
  function callEventName(kind) {
    var text = typeof kind === 'string' ? kind.trim().toLowerCase() : '';
    var bare = text.indexOf('call.') === 0 ? text.slice(5) : text;
    if (bare === '*' || CALL_EVENT_KINDS.indexOf(bare) >= 0) return 'call.' + bare;
    throw new PbxError('calls.on(): kind must be one of ' + CALL_EVENT_KINDS.join(', ') +
      " or '*', got " + JSON.stringify(kind === undefined ? null : kind), 'bad_request');
  }

  /** The call object of a pushed call event: the event without `name` and `eventId`. */
  function callOf(event) {
    var call = {};
    Object.keys(event).forEach(function (key) {
      if (key !== 'name' && key !== 'eventId') call[key] = event[key];
    });
    return call;
  }

  /**
   * callHistory's argument from a query: empty values (undefined, null, '') are left
   * out, so a form's blank fields mean "any"; `since`/`until` may be Date objects. Other
   * keys go as they are: the server names what it refuses.
   */
  function historyArgument(query) {
    var argument = {};
    Object.keys(query || {}).forEach(function (key) {
      var value = query[key];
      if (value === undefined || value === null || value === '') return;
      if (value instanceof Date) {
        if (isNaN(value.getTime())) {
          throw new PbxError('calls.history(): ' + key + ' is an invalid Date', 'bad_request');
        }
        value = value.toISOString();
      }
      argument[key] = value;
    });
    return argument;
  }

  /**
   * `client.calls`: the server's calls (see docs/calls.md for the call object).
   * Every call object it hands out can be given to callSeconds() for ticking durations.
   */
  class CallsApi {
    constructor(client) {
      this._client = client;
    }

    /** The active calls (method `calls`; filter: {extension, number, direction, pbx}). */
    async active(filter, options) {
      var answer = await this._client.call('calls', Object.assign({}, filter || {}), options);
      var at = monotonicMs();
      return answer.calls.map(function (call) { return received(call, at); });
    }

    /**
     * One page of ended calls, newest first (method `callHistory`; query: {since, until,
     * extension, number, direction, endReason, limit, pbx}). Resolves with {calls, next,
     * more()}: more() resolves with the following page (the same query, `before: next`),
     * or with null after the last one.
     */
    async history(query, options) {
      var self = this;
      var answer = await this._client.call('callHistory', historyArgument(query), options);
      var next = typeof answer.next === 'string' ? answer.next : null;
      return {
        calls: answer.calls,
        next: next,
        more: function () {
          if (next === null) return Promise.resolve(null);
          return self.history(Object.assign({}, query, {before: next}), options);
        },
      };
    }

    /** Every page of a history query: `for await (const page of pbx.calls.pages(q))`. */
    async *pages(query, options) {
      var page = await this.history(query, options);
      while (page !== null) {
        yield page;
        page = await page.more();
      }
    }

    /**
     * Subscribe to call events: `on(kind, [filter], handler)`, kind one of
     * CALL_EVENT_KINDS or '*' (every call event); filter: fields of the call object
     * (`{extension: '269'}`, `{direction: 'inbound', fromNumber: '8978*'}`), matched by
     * the server as every event filter is. The handler gets the call object plus `name`
     * and `eventId`. Returns an unsubscribe function, like client.on(); it resumes by
     * itself after a reconnect.
     */
    on(kind, filter, handler) {
      if (typeof filter === 'function') { handler = filter; filter = undefined; }
      if (typeof handler !== 'function') throw new TypeError('calls.on(): a handler is required');
      var name = callEventName(kind);
      return this._client._subscribe(name, filter, function (event) {
        handler(received(event, monotonicMs()));
      }, false);
    }

    /**
     * Keep an up-to-date map of the active calls (callId -> call object) that match
     * `filter` (fields of the call object, as in on(); matched on each call's latest
     * state, so a call leaves the map when it stops matching). `onChange(calls, event)`
     * runs after every change: with the call event that caused it, or with event null
     * after the map was re-read from the server, which happens on every (re)subscription:
     * the subscription's answer carries the active calls, read at the same instant as
     * the resume. So after a gap (a server restart) the map is right again at once.
     * Returns {calls, ready, stop()}: `ready` resolves with the map once it was first
     * read; stop() unsubscribes.
     */
    watch(filter, onChange) {
      if (typeof filter === 'function') { onChange = filter; filter = undefined; }
      if (onChange !== undefined && typeof onChange !== 'function') {
        throw new TypeError('calls.watch(): onChange must be a function');
      }
      var self = this;
      var matchesFilter = compileFilter('*', filter || {});
      var calls = new Map();
      var settle = null;
      var ready = new Promise(function (resolve, reject) { settle = {resolve: resolve, reject: reject}; });
      ready.catch(function () { /* reported through .ready */ });

      function changed(event) {
        if (!onChange) return;
        try {
          onChange(calls, event);
        } catch (e) {
          setTimeout(function () { throw e; });  // the page's bug must not stop the watch
        }
      }

      function apply(event) {
        var at = monotonicMs();
        received(event, at);  // onChange may count on either object with callSeconds()
        var call = received(callOf(event), at);
        if (call.status === 'ended' || !matchesFilter(call)) calls.delete(call.callId);
        else calls.set(call.callId, call);
        changed(event);
      }

      function reread(list) {
        var at = monotonicMs();
        calls.clear();
        list.forEach(function (call) {
          if (matchesFilter(call)) calls.set(call.callId, received(call, at));
        });
        changed(null);
        settle.resolve(calls);
      }

      function onAnswer(answer) {
        if (Array.isArray(answer.calls)) {
          reread(answer.calls);
          return;
        }
        // A server whose subscription answers carry no calls: ask for them.
        self.active().then(reread, function (error) { settle.reject(error); });
      }

      var off = this._client._subscribe('call.*', undefined, apply, false, onAnswer);
      off.ready.catch(function (error) { settle.reject(error); });
      return {
        calls: calls,
        ready: ready,
        stop: function () { return off(); },
      };
    }
  }

  /**
   * Connect and log in. `options`: {login, login2, password | sha1, timeout,
   * connectTimeout, reconnect, backoff: {initial, max, factor, jitter}, onState, onGap,
   * WebSocket}. Resolves with a Client once the server accepted the login; rejects with
   * a PbxError (errCode 'auth_failed', 'connect_failed', 'insecure_context', ...).
   */
  async function connect(url, options) {
    var opts = Object.assign({}, DEFAULTS, options || {});
    opts.backoff = Object.assign({}, DEFAULTS.backoff, (options && options.backoff) || {});
    var sha1 = opts.sha1 ? String(opts.sha1).toLowerCase()
      : (opts.password != null ? await sha1Hex(opts.password) : null);
    var credentials = {};
    if (opts.login != null) credentials.login = String(opts.login);
    if (opts.login2 != null) credentials.login2 = String(opts.login2);
    if (sha1 !== null) credentials.sha1 = sha1;
    if (opts.secret != null) credentials.secret = String(opts.secret);
    var rest = Object.assign({}, opts);
    delete rest.password; delete rest.sha1; delete rest.secret;
    var client = new Client(url || defaultUrl(), credentials, rest);
    if (typeof opts.onState === 'function') client.onState(opts.onState);
    if (typeof opts.onGap === 'function') client.onGap(opts.onGap);
    client._setState('connecting', {});
    try {
      await client._open();
    } catch (error) {
      client._finish(error);
      throw error;
    }
    client._setState('open');
    return client;
  }

  var VwellPbx = {
    connect: connect,
    Client: Client,
    PbxError: PbxError,
    sha1Hex: sha1Hex,
    matches: matches,
    callSeconds: callSeconds,
    callEventKinds: CALL_EVENT_KINDS,
    defaultUrl: defaultUrl,
    version: '0.1.0',
  };

  root.VwellPbx = VwellPbx;
  if (typeof module === 'object' && module && module.exports) module.exports = VwellPbx;
})(typeof globalThis !== 'undefined' ? globalThis : this);
