// Type declarations of roomcast.js (src/roomcast.mjs; dist/roomcast.js for <script src> and require).

/** A push frame, as the server sends it (keys in this order on the wire). */
export interface Frame {
  messageId: string;
  sendUserId: string;
  code: number;
  msg: string;
  /** Whatever JSON value the sender gave; for 1001/1002 notices a JSON string. */
  data: unknown;
}

export type State = "connecting" | "connected" | "disconnected" | "closed";

/** A WebSocket class: the browser's, or one for Node such as the `ws` package's. */
export interface WebSocketClass {
  new (url: string): {
    readyState: number;
    send(data: string): void;
    close(code?: number, reason?: string): void;
    terminate?(): void;
    // Set by the client; `any` so that the browser's and ws's own event types fit.
    onmessage: ((ev: any) => void) | null;
    onclose: ((ev: any) => void) | null;
    onerror: ((ev: any) => void) | null;
  };
}

export interface Options {
  /** The system (tenant) to connect to. Required. */
  systemId: string;
  /**
   * A connect token, or a function returning one (or a Promise of one), called at every fresh
   * connect (never for a resume), so an expired token is replaced without reloading the page.
   */
  token?: string | (() => string | Promise<string>);
  /** Session recovery: the same clientId and every frame sent meanwhile after a drop. Default true. */
  recover?: boolean;
  /** A WebSocket class, where there is no global one (Node 20: the `ws` package). */
  WebSocket?: WebSocketClass;
  /** ms; the first reconnect attempt comes within this. Default 500. */
  minReconnectDelay?: number;
  /** ms; the backoff's ceiling, and the least wait after a refusal. Default 20000; at least 100. */
  maxReconnectDelay?: number;
  /** ms between `{"cmd":"ping"}` while connected. Default 20000; at least 1. */
  pingInterval?: number;
  /** ms to wait for `{"cmd":"pong"}` (or any frame) before taking the connection for dead. Default 10000. */
  pongTimeout?: number;
  /** ms from opening a socket (or calling the token function) to the connect frame (or the token) before the attempt is given up. Default 10000. */
  connectTimeout?: number;
  /** ms a connection must have stayed up for the backoff to start again from the first step. Default 5000. */
  stableAfter?: number;
}

export interface ConnectEvent {
  clientId: string;
  /** true: the session was resumed (same clientId, missed frames follow). */
  recovered: boolean;
  /** How many frames the server sends after the connect frame, from before the resume. */
  missed: number;
}

/** From the notice's data ("" for a key the notice lacks). */
export interface PresenceEvent {
  clientId: string;
  userId: string;
  extend: string;
  frame: Frame;
}

export interface DisconnectEvent {
  code: number;
  reason: string;
  willReconnect: boolean;
}

export interface ResetEvent {
  oldClientId: string;
  clientId: string;
}

export declare class RoomcastError extends Error {
  /** Where it came from. */
  kind: "refused" | "token" | "socket" | "publish" | "protocol";
  /** -1001 for a refusal frame. */
  code?: number;
}

export interface Events {
  connect: ConnectEvent;
  message: Frame;
  online: PresenceEvent;
  offline: PresenceEvent;
  disconnect: DisconnectEvent;
  reset: ResetEvent;
  error: RoomcastError;
}

export declare class Roomcast {
  /** `url`: ws://, wss://, http:// or https:// host[:port]; an empty path means /ws. Does not connect. */
  constructor(url: string, options: Options);
  /** The session's clientId once connected (null before; the last one after close()). */
  readonly clientId: string | null;
  readonly state: State;
  on<E extends keyof Events>(event: E, fn: (arg: Events[E]) => void): this;
  off<E extends keyof Events>(event: E, fn: (arg: Events[E]) => void): this;
  /** Starts connecting, and reconnecting after every drop, until close(). */
  connect(): this;
  /** A normal close (the server ends the session at once); no reconnect until connect(). */
  close(): this;
  /** Publishes to a group this client is in (the server needs client_publish). false when not connected. */
  publish(groupName: string, message?: { code?: number; msg?: string; data?: unknown }): boolean;
}

/** The wait before reconnect attempt `attempt` (0 = the first): full jitter in [0, min(max, min·2^attempt)). */
export declare function backoff(attempt: number, min: number, max: number, random?: () => number): number;

export default Roomcast;
