// Type declarations for the vwell-pbx-srv browser client (/client.js, /client.global.js).
// ES module:     import {connect} from './client.js';
// Plain script:  <script src="/client.global.js"></script>  ->  window.VwellPbx

/** The connection's state, as reported to `onState` callbacks. */
export type ConnectionState = 'connecting' | 'open' | 'reconnecting' | 'closed';

/** Error codes of the server (docs/api.md) plus the client's own. */
export type ErrCode =
  | 'bad_request' | 'unknown_method' | 'auth_failed' | 'forbidden' | 'rate_limited'
  | 'pbx_unavailable' | 'pbx_error' | 'timeout' | 'not_supported' | 'answer_too_large'
  | 'internal'
  /** the connection dropped while the call was pending, or there is no connection */
  | 'disconnected'
  /** no answer within the call's timeout (client side) */
  | 'request_timeout'
  /** close() was called, or reconnecting gave up (wrong credentials) */
  | 'closed'
  /** the first connection could not be opened */
  | 'connect_failed'
  /** crypto.subtle is missing (not a secure context): pass `sha1` instead of `password` */
  | 'insecure_context'
  | (string & {});

/** A value of a pushed event's field: AMI gives text; a repeated header becomes a list. */
export type EventValue = string | string[] | number | boolean | null | object;

/** A pushed event: the PBX event's own fields plus `name` (and `pbx` with several PBXs). */
export interface PbxEvent {
  name: string;
  /**
   * The event's id, on every pushed event: an opaque string. Keep the last one and send
   * it back (`since`); never compare or parse it. The client does this by itself.
   */
  eventId: string;
  Event?: string;
  pbx?: string;
  /** `"api"` for events sent with dispatchEvent, with the sender's login/login2. */
  origin?: 'api';
  [field: string]: EventValue | undefined;
}

/** Field filters: a value, a list of values (any of), `*` wildcards; case-insensitive. */
export type Filters = Record<string, string | number | boolean | Array<string | number | boolean>>;

/** `{name, ...filters}` in one object. */
export type EventSpec = { name?: string } & Filters;

/** Every answer carries these; `err === null` on success (rejections carry the rest). */
export interface Answer {
  err: null;
  errCode: null;
  reqId: string;
  [field: string]: unknown;
}

/** An error answer or a client-side failure. */
export declare class PbxError extends Error {
  constructor(message: string, errCode: ErrCode, response?: Record<string, unknown> | null);
  /** The server's errCode, or one of the client's own codes. */
  readonly errCode: ErrCode;
  /** The server's whole answer (err, errCode, reqId, retryAfter, event, ...), or null. */
  readonly response: Record<string, unknown> | null;
}

export interface Backoff {
  /** first reconnect delay, ms (default 250) */
  initial?: number;
  /** the cap, ms (default 15000) */
  max?: number;
  /** growth per attempt (default 2) */
  factor?: number;
  /** 0..1: each delay is randomly shortened by up to this fraction (default 0.5) */
  jitter?: number;
}

export interface StateDetail {
  state: ConnectionState;
  /** reconnect attempt number (0 when open) */
  attempt: number;
  /** with 'reconnecting': ms until the next attempt */
  delay?: number;
  /** why the connection was lost or closed, if known */
  error: PbxError | null;
}

export type StateCallback = (state: ConnectionState, detail: StateDetail) => void;

/** One subscription whose resume after a reconnect could not replay everything. */
export interface GapSubscription {
  name: string;
  filters: Filters;
  /** the eventId it resumed from */
  since: string;
}

/**
 * Reported once per reconnect when the server said `gap: true` for at least one
 * subscription: it restarted, or the client was away longer than the server keeps
 * events. Events may have been missed: re-read state (e.g. `call('calls')`).
 */
export interface GapDetail {
  subscriptions: GapSubscription[];
  /** when the client learnt it (ISO 8601) */
  at: string;
}

export type GapCallback = (detail: GapDetail) => void;

export interface ConnectOptions {
  login: string;
  login2: string;
  /** the password; its SHA-1 is computed with Web Crypto and only the SHA-1 is kept */
  password?: string;
  /** the hex SHA-1 of the password, instead of `password` */
  sha1?: string;
  /** server-to-server secret, when the server has one configured */
  secret?: string;
  /** default per-call timeout, ms (default 30000) */
  timeout?: number;
  /** ms to open the WebSocket and have the login answered (default 10000) */
  connectTimeout?: number;
  /** reconnect automatically (default true) */
  reconnect?: boolean;
  backoff?: Backoff;
  /** the same as calling client.onState(cb) before the first connection */
  onState?: StateCallback;
  /** the same as calling client.onGap(cb) before the first connection */
  onGap?: GapCallback;
  /** a WebSocket implementation (default: the global one) */
  WebSocket?: typeof WebSocket;
}

export interface CallOptions {
  /** ms to wait for the answer (default: the client's `timeout`) */
  timeout?: number;
}

/** Returned by on() and once(handler): call it to unsubscribe. */
export interface Unsubscribe {
  /** Remove the subscription; resolves with how many server subscriptions were removed. */
  (): Promise<number>;
  /** Resolves with the server's subscriptionId once it confirmed; rejects with its error. */
  readonly ready: Promise<string | null>;
  /** The server's subscriptionId now: a new one after each reconnect, null while down. */
  readonly subscriptionId: string | null;
  /**
   * The eventId this subscription is up to date with (its last event's, or the
   * server's position when it subscribed); it resumes from there after a reconnect.
   */
  readonly lastEventId: string | null;
}

/** The `whoami` answer (without err, errCode and reqId). */
export interface Identity {
  login: string;
  login2: string;
  role: string;
  extensions: string[];
  /** API methods this login may call. */
  methods: string[];
  /** AMI action patterns `send` may carry (case-folded). */
  actions: string[];
  /** Event rules the subscriptions are filtered by. */
  events: Array<{name: string; fields: Record<string, string[]>}>;
  ownExtensionsOnly: boolean;
  ownCallsOnly: boolean;
  admin: boolean;
}

// --- calls (docs/calls.md: the call object, every event and the tricky cases) ---------

/** `ringing`: not answered yet; `up`: answered; `held`: answered and someone holds it. */
export type CallStatus = 'ringing' | 'up' | 'held' | 'ended';
/** From the configured trunk and extension patterns (`[calls] trunks`, `extensions`). */
export type CallDirection = 'inbound' | 'outbound' | 'internal' | 'unknown';
export type CallEndReason =
  | 'completed' | 'no_answer' | 'busy' | 'cancelled' | 'failed'
  | 'answered_elsewhere' | 'transferred' | 'unknown';
/** What `calls.on()` takes: a call event kind, or '*' for every call event. */
export type CallEventKind =
  | 'ringing' | 'answered' | 'held' | 'resumed' | 'transferred' | 'updated' | 'ended' | 'missed';
export type CallEventName = `call.${CallEventKind}`;

/** One transfer of a call. */
export interface CallTransfer {
  type: 'blind' | 'attended';
  /** who moved the call: an extension, else a number, else null */
  by: string | null;
  /** where to: an extension or a number */
  to: string | null;
  /** when (ISO 8601 UTC, milliseconds) */
  at: string;
}

/** The call object: what `calls`, `callHistory` and every call event carry. */
export interface Call {
  /** Stable for the whole call, across transfers. */
  callId: string;
  /** The configured name of the PBX. */
  pbx: string;
  status: CallStatus;
  direction: CallDirection;
  /** The caller's number, normalised by the server's phone rules; null if not a number. */
  fromNumber: string | null;
  fromName: string | null;
  /** What the caller dialled (the DID, the extension, a ring group's number, `dial`'s `to`). */
  toNumber: string | null;
  /** The name of the phone ringing, then of the one that answered; null when unknown. */
  toName: string | null;
  /** The local extension this message is about: the one ringing, talking, or that hung up. */
  extension: string | null;
  /** The trunk's endpoint (`YSGSM/11`) of an inbound or outbound call. */
  trunk: string | null;
  /** The number an inbound call came in on, when the trunk gives one. */
  did: string | null;
  /** ISO 8601 UTC with milliseconds. */
  startedAt: string;
  /** When a called party first answered; null if never. */
  answeredAt: string | null;
  endedAt: string | null;
  /** Ringing time so far (up to the answer or the end); see callSeconds() for ticking. */
  ringSeconds: number;
  /** Talking time so far, holds included. */
  talkSeconds: number;
  /** null until the call ended. */
  endReason: CallEndReason | null;
  onHold: boolean;
  /** Oldest first; at most the server's `max_transfers`. */
  transfers: CallTransfer[];
  /** The call's live channels (Local ones left out): what `redirect` takes as `channel`. */
  channels: string[];
  /** True when made by this server's `dial`. */
  originated: boolean;
  /** That `dial`'s ActionID; null otherwise. */
  actionId: string | null;
}

/** A pushed call event: the call object right after the event, plus its name and id. */
export interface CallEvent extends Call {
  name: CallEventName;
  eventId: string;
}

/**
 * Field filters on the call object, as for every event: a value, a list (any of), `*`
 * wildcards; case-insensitive. E.g. `{extension: ['269', '270']}`, `{fromNumber: '8978*'}`.
 */
export type CallFilter = Partial<Record<keyof Call, string | number | boolean |
  Array<string | number | boolean>>>;

/** The `calls` method's filters. */
export interface ActiveCallsFilter {
  /** only calls that involve this extension */
  extension?: string;
  /** only calls from or to this number (normalised like every number) */
  number?: string;
  direction?: CallDirection;
  /** one PBX by its configured name (default: every PBX) */
  pbx?: string;
}

/** A `callHistory` query; empty values ('' , null, undefined) are left out. */
export interface CallHistoryQuery {
  /** calls that started at or after it: a Date, ISO 8601, or epoch seconds */
  since?: Date | string | number | null;
  /** calls that started before it */
  until?: Date | string | number | null;
  extension?: string | null;
  number?: string | null;
  direction?: CallDirection | '' | null;
  endReason?: CallEndReason | '' | null;
  /** calls per page, 1..1000 (default 100) */
  limit?: number;
  /** a `next` cursor (calls.history() pages by itself with more()) */
  before?: string | null;
  pbx?: string;
}

/** One page of the call history, newest first. */
export interface CallHistoryPage {
  calls: Call[];
  /** the cursor of the next page, or null at the end */
  next: string | null;
  /** The next page (the same query with `before: next`), or null after the last. */
  more(): Promise<CallHistoryPage | null>;
}

/** A call event handler: the call object plus `name` and `eventId`. */
export type CallEventHandler = (event: CallEvent) => void;

/**
 * Called after every change of a watch's map: with the call event that caused it, or
 * with null after the map was (re)read from the server (at first, and after every
 * reconnect, a server restart included).
 */
export type CallWatchCallback = (calls: ReadonlyMap<string, Call>, event: CallEvent | null) => void;

/** What calls.watch() returns. */
export interface CallWatch {
  /** callId -> the call's latest state; live: the same Map object all along. */
  readonly calls: ReadonlyMap<string, Call>;
  /** Resolves with the map once it was first read; rejects if the server refused. */
  readonly ready: Promise<ReadonlyMap<string, Call>>;
  /** Stop watching (unsubscribes); resolves with how many server subscriptions went. */
  stop(): Promise<number>;
}

/** `client.calls`. */
export interface CallsApi {
  /** The active calls (method `calls`). */
  active(filter?: ActiveCallsFilter, options?: CallOptions): Promise<Call[]>;
  /** One page of ended calls, newest first (method `callHistory`). */
  history(query?: CallHistoryQuery, options?: CallOptions): Promise<CallHistoryPage>;
  /** Every page of a query, one after the other. */
  pages(query?: CallHistoryQuery, options?: CallOptions): AsyncGenerator<CallHistoryPage, void>;
  /** Subscribe to call events of one kind ('*': all); returns an unsubscribe function. */
  on(kind: CallEventKind | CallEventName | '*' | 'call.*', handler: CallEventHandler): Unsubscribe;
  on(kind: CallEventKind | CallEventName | '*' | 'call.*', filter: CallFilter | undefined,
     handler: CallEventHandler): Unsubscribe;
  /** Keep an up-to-date map of the active calls matching `filter`. */
  watch(onChange?: CallWatchCallback): CallWatch;
  watch(filter: CallFilter | undefined, onChange?: CallWatchCallback): CallWatch;
}

/** Ring and talk seconds of a call now (ticking while it rings or talks). */
export interface CallSeconds {
  ringSeconds: number;
  talkSeconds: number;
}

export type EventHandler = (event: PbxEvent) => void;

export declare class Client {
  /** The WebSocket URL. */
  readonly url: string;
  readonly state: ConnectionState;
  /** Local subscriptions in force. */
  readonly subscriptions: number;
  /** Why the connection was last lost or closed, if it was. */
  readonly lastError: PbxError | null;
  /** Who the server says we are: the `whoami` answer of the last login. */
  readonly identity: Identity | null;
  /** The server's calls: active(), history(), pages(), on(), watch(). */
  readonly calls: CallsApi;

  /** Call an API method (credentials and reqId are added); rejects with PbxError. */
  call<T extends Record<string, unknown> = Record<string, unknown>>(
    method: string, args?: Record<string, unknown>, options?: CallOptions): Promise<Answer & T>;

  on(name: string, handler: EventHandler): Unsubscribe;
  on(name: string, filters: Filters | undefined, handler: EventHandler): Unsubscribe;
  on(spec: EventSpec, handler: EventHandler): Unsubscribe;

  once(name: string, filters?: Filters): Promise<PbxEvent>;
  once(spec: EventSpec): Promise<PbxEvent>;
  once(name: string, handler: EventHandler): Unsubscribe;
  once(name: string, filters: Filters | undefined, handler: EventHandler): Unsubscribe;
  once(spec: EventSpec, handler: EventHandler): Unsubscribe;

  /** Remove every subscription; resolves with how many server subscriptions went. */
  offAll(): Promise<number>;

  /** Register a state callback; returns a function that removes it. */
  onState(cb: StateCallback): () => void;

  /**
   * Register a gap callback (see GapDetail): after a reconnect, the subscriptions
   * resumed with events that may be missing. Returns a function that removes it.
   */
  onGap(cb: GapCallback): () => void;

  /** Close for good: no reconnect; pending calls reject with errCode 'closed'. */
  close(): void;
}

/** Connect and log in; resolves once the server accepted the credentials. */
export declare function connect(url: string | null | undefined, options: ConnectOptions): Promise<Client>;
/** Hex SHA-1 of a UTF-8 string (Web Crypto; secure contexts only). */
export declare function sha1Hex(text: string): Promise<string>;
/** Whether a pushed event matches `{name, ...filters}` by the server's rules. */
export declare function matches(spec: EventSpec, event: PbxEvent): boolean;
/**
 * A call's ring and talk seconds now: the object's own values plus the time since the
 * calls API received it (on the ring time while it rings, on the talk time once
 * answered). Ended calls and objects not handed out by the calls API keep their values.
 */
export declare function callSeconds(call: Call): CallSeconds;
/** The kinds calls.on() takes (without '*'). */
export declare const callEventKinds: readonly CallEventKind[];
/** `ws://` (or `wss://`) + the page's host + `/api`. */
export declare function defaultUrl(): string;
export declare const version: string;

export interface VwellPbxNamespace {
  connect: typeof connect;
  Client: typeof Client;
  PbxError: typeof PbxError;
  sha1Hex: typeof sha1Hex;
  matches: typeof matches;
  callSeconds: typeof callSeconds;
  callEventKinds: typeof callEventKinds;
  defaultUrl: typeof defaultUrl;
  version: string;
}

export declare const VwellPbx: VwellPbxNamespace;
export default VwellPbx;

declare global {
  /** Set by /client.global.js (and by importing /client.js). */
  var VwellPbx: VwellPbxNamespace;
}
