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
/** `ws://` (or `wss://`) + the page's host + `/api`. */
export declare function defaultUrl(): string;
export declare const version: string;

export interface VwellPbxNamespace {
  connect: typeof connect;
  Client: typeof Client;
  PbxError: typeof PbxError;
  sha1Hex: typeof sha1Hex;
  matches: typeof matches;
  defaultUrl: typeof defaultUrl;
  version: string;
}

export declare const VwellPbx: VwellPbxNamespace;
export default VwellPbx;

declare global {
  /** Set by /client.global.js (and by importing /client.js). */
  var VwellPbx: VwellPbxNamespace;
}
