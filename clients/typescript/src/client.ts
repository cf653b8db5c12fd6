import http from "node:http";
import https from "node:https";
import { isIPv4, isIPv6 } from "node:net";

import { KeybrokerError, UnavailableError } from "./errors.js";
import {
  parseProxyToken,
  parseResolveAnswer,
  type ProxyToken,
  type ProxyTokenRequest,
  type ReportRequest,
  type ReportResult,
  type ResolveRequest,
  type Resolution,
  type WatchEvent,
} from "./types.js";

/** The settings of a Client. */
export interface ClientOptions {
  /** keybroker's address, e.g. `https://keybroker.internal:8080`. */
  address: string;
  /** A resolver token (`kbt_...`). */
  token: string;
  /** PEM CAs to trust for keybroker's certificate (default: Node's). */
  ca?: string | Buffer | Array<string | Buffer>;
  /** A PEM client certificate and its key, for a keybroker that requires mutual TLS. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** Bounds each request (not the watch stream). Default: 10,000 ms. */
  timeoutMs?: number;
  /**
   * Allows an `http://` address whose host is not loopback. Without it
   * such an address is refused, as the Go client refuses it: the token,
   * and the keys in the answers, would cross the network in clear. Set it
   * only where a mesh encrypts the connection outside the process.
   */
  allowInsecureHTTP?: boolean;
}

/** The answers are small; a larger one is not keybroker's. */
const MAX_ANSWER_BYTES = 1 << 20;
/** The longest line of the watch stream. */
const MAX_EVENT_BYTES = 64 << 10;
const USER_AGENT = "keybroker-typescript/2.0.0-dev";

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/**
 * Client makes keybroker's execution-path calls: resolve, report, and the
 * watch stream. Connections are kept alive and reused; redirects are never
 * followed. The token goes only into the Authorization header.
 */
export class Client {
  readonly #base: URL;
  readonly #token: string;
  readonly #timeoutMs: number;
  readonly #agent: http.Agent;
  readonly #request: typeof http.request;

  constructor(opts: ClientOptions) {
    let base: URL;
    try {
      base = new URL(opts.address);
    } catch {
      throw new TypeError("keybroker client: address is not a URL");
    }
    if (base.protocol !== "http:" && base.protocol !== "https:") {
      throw new TypeError("keybroker client: address must be http:// or https://");
    }
    if (base.protocol === "http:" && !isLoopback(base.hostname) && opts.allowInsecureHTTP !== true) {
      throw new TypeError(
        `keybroker client: ${base.origin} is plain http to a host that is not loopback: the token and keys would cross the network in clear; ` +
          "use https (or allowInsecureHTTP: true)",
      );
    }
    if (typeof opts.token !== "string" || opts.token === "") {
      throw new TypeError("keybroker client: token is required");
    }
    this.#base = base;
    this.#token = opts.token;
    this.#timeoutMs = opts.timeoutMs ?? 10_000;
    if (base.protocol === "https:") {
      this.#agent = new https.Agent({
        keepAlive: true,
        minVersion: "TLSv1.2",
        ...(opts.ca !== undefined ? { ca: opts.ca } : {}),
        ...(opts.cert !== undefined ? { cert: opts.cert } : {}),
        ...(opts.key !== undefined ? { key: opts.key } : {}),
      });
      this.#request = https.request;
    } else {
      this.#agent = new http.Agent({ keepAlive: true });
      this.#request = http.request;
    }
  }

  /** Resolves the key of a call (POST /v1/resolve). */
  async resolve(req: ResolveRequest, opts: { signal?: AbortSignal } = {}): Promise<Resolution> {
    const ans = await this.#call("POST", "/v1/resolve", req, opts.signal);
    const res = parseResolveAnswer(json(ans));
    if (res === undefined) {
      throw new UnavailableError("keybroker: POST /v1/resolve: the answer is not a resolve answer");
    }
    return res;
  }

  /** Says what the provider answered to a call made with a resolved key (POST /v1/resolve/report). */
  async report(req: ReportRequest, opts: { signal?: AbortSignal } = {}): Promise<ReportResult> {
    const ans = await this.#call("POST", "/v1/resolve/report", req, opts.signal);
    return json(ans) as ReportResult;
  }

  /**
   * Mints a short-lived token for the credential proxy (POST
   * /v1/proxy-tokens): hand it to a sandbox, which calls
   * `/proxy/{provider}/...` with it as its provider API key and never
   * holds a key. Revoking this client's resolver token ends it.
   */
  async mintProxyToken(req: ProxyTokenRequest, opts: { signal?: AbortSignal } = {}): Promise<ProxyToken> {
    const ans = await this.#call("POST", "/v1/proxy-tokens", req, opts.signal);
    const tok = parseProxyToken(json(ans));
    if (tok === undefined) {
      throw new UnavailableError("keybroker: POST /v1/proxy-tokens: the answer is not a proxy token");
    }
    return tok;
  }

  /**
   * Opens GET /v1/resolve/watch and yields its events until the stream
   * ends (then it throws UnavailableError) or `signal` aborts. A refused
   * token throws KeybrokerError (401). It has no timeout: the server sends
   * a heartbeat every 15 s.
   */
  async *watch(signal: AbortSignal): AsyncGenerator<WatchEvent, void, undefined> {
    const res = await this.#open("GET", "/v1/resolve/watch", undefined, signal, { accept: "application/x-ndjson" }, false);
    if (res.statusCode !== 200) {
      const ans = await readAll(res);
      throw apiError(ans);
    }
    let pending = "";
    try {
      for await (const chunk of res as AsyncIterable<Buffer>) {
        pending += chunk.toString("utf8");
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (line === "") continue;
          let ev: WatchEvent;
          try {
            ev = JSON.parse(line) as WatchEvent;
          } catch {
            throw new UnavailableError("keybroker: watch stream: a line that is not an event");
          }
          yield ev;
        }
        if (pending.length > MAX_EVENT_BYTES) {
          throw new UnavailableError("keybroker: watch stream: a line longer than 64 KiB");
        }
      }
    } catch (err) {
      if (err instanceof UnavailableError || signal.aborted) throw err;
      throw new UnavailableError("keybroker: watch stream broke", { cause: err });
    } finally {
      res.destroy();
    }
    throw new UnavailableError("keybroker: watch stream ended");
  }

  /** Ends the kept-alive connections. */
  close(): void {
    this.#agent.destroy();
  }

  async #call(method: string, path: string, body: unknown, signal: AbortSignal | undefined): Promise<Answer> {
    const res = await this.#open(method, path, body, signal, {}, true);
    const ans = await readAll(res);
    if (ans.status >= 300) throw apiError(ans);
    return ans;
  }

  #open(
    method: string,
    path: string,
    body: unknown,
    signal: AbortSignal | undefined,
    headers: Record<string, string>,
    bounded: boolean,
  ): Promise<http.IncomingMessage> {
    const what = `keybroker: ${method} ${path}`;
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    return new Promise((resolve, reject) => {
      const req = this.#request(new URL(path, this.#base), {
        method,
        agent: this.#agent,
        headers: {
          authorization: `Bearer ${this.#token}`,
          "user-agent": USER_AGENT,
          ...(payload !== undefined ? { "content-type": "application/json", "content-length": String(payload.length) } : {}),
          ...headers,
        },
        ...(signal !== undefined ? { signal } : {}),
      });
      let timer: NodeJS.Timeout | undefined;
      if (bounded) {
        timer = setTimeout(() => req.destroy(new UnavailableError(`${what}: no answer within ${this.#timeoutMs} ms`)), this.#timeoutMs);
        timer.unref();
      }
      req.on("response", (res) => {
        if (timer !== undefined) {
          // The body is read under the same bound.
          res.on("close", () => clearTimeout(timer));
        }
        resolve(res);
      });
      req.on("error", (err: Error) => {
        if (timer !== undefined) clearTimeout(timer);
        if (err instanceof UnavailableError || err.name === "AbortError") reject(err);
        else reject(new UnavailableError(`${what}: ${err.message}`, { cause: err }));
      });
      req.end(payload);
    });
  }
}

/**
 * Whether a URL's hostname is loopback: localhost, 127.0.0.0/8, ::1 or
 * an IPv4-mapped 127.x address (as the WHATWG URL parser spells them).
 */
function isLoopback(hostname: string): boolean {
  const host = hostname.startsWith("[") && hostname.endsWith("]") ? hostname.slice(1, -1).toLowerCase() : hostname.toLowerCase();
  if (host === "localhost") return true;
  if (isIPv4(host)) return host.startsWith("127.");
  if (isIPv6(host)) return host === "::1" || /^::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}$/.test(host);
  return false;
}

function readAll(res: http.IncomingMessage): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    res.on("data", (c: Buffer) => {
      size += c.length;
      if (size > MAX_ANSWER_BYTES) {
        res.destroy(new UnavailableError("keybroker: an answer larger than 1 MiB"));
        return;
      }
      chunks.push(c);
    });
    res.on("end", () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
    res.on("error", (err) => reject(err instanceof UnavailableError ? err : new UnavailableError(`keybroker: the answer broke: ${err.message}`, { cause: err })));
  });
}

function json(ans: Answer): unknown {
  try {
    return JSON.parse(ans.body.toString("utf8"));
  } catch {
    throw new UnavailableError(`keybroker: a ${ans.status} answer that is not JSON`);
  }
}

function apiError(ans: Answer): KeybrokerError {
  const requestId = typeof ans.headers["x-request-id"] === "string" ? ans.headers["x-request-id"] : undefined;
  try {
    const e = (JSON.parse(ans.body.toString("utf8")) as { error?: { code?: unknown; message?: unknown; reason?: unknown } }).error;
    if (e !== undefined && typeof e.code === "string" && e.code !== "") {
      return new KeybrokerError(ans.status, e.code, String(e.message ?? ""), typeof e.reason === "string" ? e.reason : undefined, requestId);
    }
  } catch {
    // not keybroker's error body
  }
  return new KeybrokerError(ans.status, "http_error", http.STATUS_CODES[ans.status] ?? "error", undefined, requestId);
}
