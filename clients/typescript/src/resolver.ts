import { setTimeout as sleep } from "node:timers/promises";
import { inspect } from "node:util";

import { Client, type ClientOptions } from "./client.js";
import { ClosedError, KeybrokerError, RevokedError, UnavailableError } from "./errors.js";
import type { Outcome, ReportResult, Resolution, WatchEvent } from "./types.js";

/** Where the Resolver says how its stream is doing. */
export interface Logger {
  info(msg: string, attrs?: Record<string, unknown>): void;
  warn(msg: string, attrs?: Record<string, unknown>): void;
}

/** The settings of a Resolver; what is left out takes the default stated. */
export interface ResolverOptions {
  /** A Client with a resolver token, or the options to make one. */
  client: Client | ClientOptions;
  /** Bounds the cache (the oldest answer goes first). Default: 10,000. */
  maxEntries?: number;
  /**
   * Bounds an answer's age even while the stream is up; the server's cache
   * TTL (`ttlSeconds`) when that is shorter. A changed key is evicted by
   * the stream long before. Default: 30,000 ms.
   */
  maxAgeMs?: number;
  /** While the stream is down, answers older than this are not served (they are fetched again). Default: 2,000 ms. */
  maxDisconnectedAgeMs?: number;
  /** Serves an answer up to this old when keybroker cannot be reached (a 5xx or no answer). Default: 0, off. */
  staleIfErrorMs?: number;
  /** Default: warnings to console.warn, nothing else. */
  logger?: Logger;
}

interface Entry {
  res: Resolution;
  workspace: string;
  provider: string;
  at: number;
  maxAgeMs: number;
}

interface Flight {
  promise: Promise<Resolution>;
  workspace: string;
  provider: string;
  /** Set by an eviction that matches: the answer is returned but not cached (it may predate the change). */
  stale: boolean;
}

const SILENCE_MS = 45_000; // three missed heartbeats
const defaultLogger: Logger = {
  info() {},
  warn(msg, attrs) {
    console.warn(msg, attrs ?? "");
  },
};

/**
 * Resolver answers `resolve` from a cache in this process's memory, filled
 * by POST /v1/resolve (concurrent misses of one key share one request) and
 * kept exact by GET /v1/resolve/watch, which evicts what a change can
 * alter. Exactness comes first: while the stream is down no answer older
 * than `maxDisconnectedAgeMs` is served, every (re)connection flushes the
 * cache, and a revoked token empties it for good. Call `close()` at
 * shutdown: the open stream keeps the process alive.
 */
export class Resolver {
  readonly #client: Client;
  readonly #ownsClient: boolean;
  readonly #maxEntries: number;
  readonly #maxAgeMs: number;
  readonly #maxDisconnectedAgeMs: number;
  readonly #staleIfErrorMs: number;
  readonly #log: Logger;
  readonly #cache = new Map<string, Entry>();
  readonly #inflight = new Map<string, Flight>();
  readonly #stop = new AbortController();
  readonly #done: Promise<void>;
  #connected = false;
  #revoked = false;
  #closed = false;
  #requests = 0;
  #waiters: Array<{ resolve: () => void; reject: (err: Error) => void }> = [];

  constructor(opts: ResolverOptions) {
    if (opts === undefined || opts.client === undefined) {
      throw new TypeError("keybroker resolver: options.client is required");
    }
    this.#ownsClient = !(opts.client instanceof Client);
    this.#client = opts.client instanceof Client ? opts.client : new Client(opts.client);
    this.#maxEntries = positive(opts.maxEntries, 10_000);
    this.#maxAgeMs = positive(opts.maxAgeMs, 30_000);
    this.#maxDisconnectedAgeMs = positive(opts.maxDisconnectedAgeMs, 2_000);
    this.#staleIfErrorMs = Math.max(0, opts.staleIfErrorMs ?? 0);
    this.#log = opts.logger ?? defaultLogger;
    this.#done = this.#watch();
  }

  /** Whether the watch stream is up. */
  get connected(): boolean {
    return this.#connected;
  }

  /** Whether the token was found revoked (the Resolver is then empty and refuses). */
  get revoked(): boolean {
    return this.#revoked;
  }

  /** How many POST /v1/resolve this Resolver sent. */
  get requests(): number {
    return this.#requests;
  }

  /** How many answers are cached. */
  get size(): number {
    return this.#cache.size;
  }

  /** Waits until the stream is up (or fails: revoked, closed, or not within timeoutMs). */
  ready(timeoutMs = 10_000): Promise<void> {
    if (this.#connected) return Promise.resolve();
    if (this.#revoked) return Promise.reject(new RevokedError());
    if (this.#closed) return Promise.reject(new ClosedError());
    return new Promise((resolve, reject) => {
      const w = {
        resolve: () => {
          clearTimeout(timer);
          resolve();
        },
        reject: (err: Error) => {
          clearTimeout(timer);
          reject(err);
        },
      };
      const timer = setTimeout(() => {
        this.#waiters = this.#waiters.filter((x) => x !== w);
        reject(new UnavailableError(`keybroker resolver: the watch stream did not connect within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.#waiters.push(w);
    });
  }

  /**
   * The key for a call: from the local cache when it holds a fresh answer,
   * else from keybroker. `signal` stops this caller's wait, not the request
   * other callers share.
   */
  async resolve(workspace: string, provider: string, model = "", opts: { signal?: AbortSignal } = {}): Promise<Resolution> {
    const k = `${workspace}\u0000${provider}\u0000${model}`;
    const e = this.#cache.get(k);
    if (e !== undefined && this.#fresh(e)) return e.res;
    if (this.#revoked) throw new RevokedError();
    if (this.#closed) throw new ClosedError();
    opts.signal?.throwIfAborted();
    let f = this.#inflight.get(k);
    if (f === undefined) f = this.#fetch(k, workspace, provider, model);
    try {
      return await abortable(f.promise, opts.signal);
    } catch (err) {
      if (
        e !== undefined &&
        this.#staleIfErrorMs > 0 &&
        (e.res.keyExpiresAt === undefined || e.res.keyExpiresAt.getTime() > Date.now()) &&
        performance.now() - e.at < this.#staleIfErrorMs &&
        unavailable(err) &&
        !this.#revoked &&
        !opts.signal?.aborted
      ) {
        return e.res;
      }
      throw err;
    }
  }

  /** Says what the provider answered to a call made with a resolved key (POST /v1/resolve/report). */
  async report(resolutionId: string, outcome: Outcome, retryAfterSeconds?: number): Promise<ReportResult> {
    const res = await this.#client.report({ resolutionId, outcome, ...(retryAfterSeconds !== undefined ? { retryAfterSeconds } : {}) });
    // A report about a shared key (an organization's or a hosted one) takes
    // it out for this workspace alone, and nothing comes on the stream: drop
    // the cached answer, so that the next resolve asks for the next key.
    if (outcome !== "ok") {
      for (const [k, e] of this.#cache) {
        if (e.res.resolutionId === resolutionId) this.#cache.delete(k);
      }
    }
    return res;
  }

  /** Stops the stream and drops every key. */
  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#stop.abort();
      for (const w of this.#waiters.splice(0)) w.reject(new ClosedError());
    }
    await this.#done;
    this.#flush();
    if (this.#ownsClient) this.#client.close();
  }

  toString(): string {
    return `Resolver{connected:${this.#connected} entries:${this.#cache.size}}`;
  }

  [inspect.custom](): string {
    return this.toString();
  }

  #fetch(k: string, workspace: string, provider: string, model: string): Flight {
    this.#requests++;
    const f: Flight = { workspace, provider, stale: false, promise: undefined as unknown as Promise<Resolution> };
    f.promise = this.#client.resolve({ workspace, provider, ...(model !== "" ? { model } : {}) }).then(
      (res) => {
        this.#inflight.delete(k);
        if (!f.stale && !this.#revoked && !this.#closed) {
          if (this.#cache.size >= this.#maxEntries && !this.#cache.has(k)) {
            const oldest = this.#cache.keys().next();
            if (oldest.done !== true) this.#cache.delete(oldest.value);
          }
          let maxAgeMs = this.#maxAgeMs;
          if (res.ttlSeconds !== undefined && res.ttlSeconds > 0) {
            maxAgeMs = Math.min(maxAgeMs, res.ttlSeconds * 1000); // never longer than the server keeps it
          }
          if (res.expiresAt !== undefined) {
            // A minted credential is refreshed before it expires: a minute
            // early, or halfway for one that lives less than two minutes.
            const left = res.expiresAt.getTime() - Date.now();
            maxAgeMs = Math.max(0, Math.min(maxAgeMs, left - Math.min(60_000, left / 2)));
          }
          if (res.keyExpiresAt !== undefined) {
            // Never kept past the provider key's own expiry.
            maxAgeMs = Math.max(0, Math.min(maxAgeMs, res.keyExpiresAt.getTime() - Date.now()));
          }
          this.#cache.delete(k); // re-inserted last: the Map's order is the age order
          this.#cache.set(k, { res, workspace, provider, at: performance.now(), maxAgeMs });
        }
        return res;
      },
      (err: unknown) => {
        this.#inflight.delete(k);
        throw err;
      },
    );
    // Every caller awaits it; this keeps a rejection that only an aborted
    // caller would have seen from counting as unhandled.
    f.promise.catch(() => {});
    this.#inflight.set(k, f);
    return f;
  }

  /** Whether e may be served now: younger than its bound, and, while the stream is down, than maxDisconnectedAgeMs. */
  #fresh(e: Entry): boolean {
    const age = performance.now() - e.at;
    return age < e.maxAgeMs && (this.#connected || age < this.#maxDisconnectedAgeMs);
  }

  #flush(): void {
    this.#cache.clear();
    for (const f of this.#inflight.values()) f.stale = true;
  }

  /** Drops what ev can alter. */
  #evict(ev: WatchEvent): void {
    for (const [k, e] of this.#cache) {
      if (alters(ev, e.workspace, e.provider)) this.#cache.delete(k);
    }
    for (const f of this.#inflight.values()) {
      if (alters(ev, f.workspace, f.provider)) f.stale = true;
    }
  }

  /** Keeps the stream up, reconnecting with jittered backoff, until closed or revoked. */
  async #watch(): Promise<void> {
    const signal = this.#stop.signal;
    let delayMs = 100;
    while (!signal.aborted) {
      let err: unknown;
      let helloSeen = false;
      try {
        await this.#stream(() => {
          helloSeen = true;
        });
      } catch (e) {
        err = e;
      }
      this.#connected = false;
      if (signal.aborted) return;
      if ((err instanceof KeybrokerError && err.status === 401) || err instanceof RevokedError) {
        this.#revoked = true;
        this.#flush();
        for (const w of this.#waiters.splice(0)) w.reject(new RevokedError());
        this.#log.warn("keybroker resolver: the token was revoked or expired; every key dropped", { error: String(err) });
        return;
      }
      if (helloSeen) delayMs = 100; // the connection was up: start the backoff again
      const waitMs = Math.round(delayMs / 2 + Math.random() * delayMs);
      this.#log.info("keybroker resolver: watch stream down; reconnecting", { error: String(err), inMs: waitMs });
      try {
        await sleep(waitMs, undefined, { signal, ref: false });
      } catch {
        return; // closed
      }
      delayMs = Math.min(2 * delayMs, 5_000);
    }
  }

  /** Reads one connection of the stream; a silence of 45 s counts as a broken connection. */
  async #stream(onHello: () => void): Promise<void> {
    const conn = new AbortController();
    const stop = () => conn.abort();
    this.#stop.signal.addEventListener("abort", stop, { once: true });
    const silence = setTimeout(stop, SILENCE_MS);
    silence.unref();
    try {
      for await (const ev of this.#client.watch(conn.signal)) {
        silence.refresh();
        switch (ev.type) {
          case "hello":
            // What was cached may have changed while the stream was down.
            this.#flush();
            this.#connected = true;
            onHello();
            for (const w of this.#waiters.splice(0)) w.resolve();
            break;
          case "flush":
            this.#flush();
            break;
          case "invalidate":
            this.#evict(ev);
            break;
          case "revoked":
            throw new RevokedError();
        }
      }
    } finally {
      clearTimeout(silence);
      this.#stop.signal.removeEventListener("abort", stop);
    }
  }
}

/** Whether ev can change the answer for a workspace and provider. */
function alters(ev: WatchEvent, workspace: string, provider: string): boolean {
  if (ev.workspace !== undefined && ev.workspace !== "") return workspace === ev.workspace;
  if (ev.scope === "workspace") {
    return workspace === ev.scopeId && (ev.provider === undefined || ev.provider === "" || provider === ev.provider);
  }
  // An organization's or the hosted pool may serve any workspace.
  return ev.provider === undefined || ev.provider === "" || provider === ev.provider;
}

function unavailable(err: unknown): boolean {
  if (err instanceof KeybrokerError) return err.status >= 500;
  return err instanceof UnavailableError;
}

function positive(v: number | undefined, def: number): number {
  return v !== undefined && v > 0 ? v : def;
}

function abortable<T>(p: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return p;
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(
      (v) => {
        signal.removeEventListener("abort", onAbort);
        resolve(v);
      },
      (err: unknown) => {
        signal.removeEventListener("abort", onAbort);
        reject(err);
      },
    );
  });
}
