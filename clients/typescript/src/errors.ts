/**
 * The errors of keybroker's Node.js library. None of them carries a key
 * or a token: messages hold the status, keybroker's error code and its
 * message, which never name a secret.
 */

/** KeybrokerError: keybroker answered with an error (4xx or 5xx). */
export class KeybrokerError extends Error {
  override readonly name = "KeybrokerError";
  /** The HTTP status. */
  readonly status: number;
  /** keybroker's error code, e.g. `no_key`, `unauthorized`, `unavailable`. */
  readonly code: string;
  /** Details some codes (`hosted_fallback_off`, `no_key_allows_model`, ...). */
  readonly reason: string | undefined;
  /** The request's X-Request-Id, to find it in keybroker's access log. */
  readonly requestId: string | undefined;

  constructor(status: number, code: string, message: string, reason?: string, requestId?: string) {
    super(`keybroker: ${status} ${code}: ${message}`);
    this.status = status;
    this.code = code;
    this.reason = reason;
    this.requestId = requestId;
  }
}

/**
 * UnavailableError: keybroker could not be reached or gave no usable
 * answer (refused connection, reset, timeout, an answer that is not
 * keybroker's). `cause` holds Node's own error.
 */
export class UnavailableError extends Error {
  override readonly name = "UnavailableError";
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** RevokedError: the resolver token was revoked or expired; the Resolver holds nothing and resolves nothing. */
export class RevokedError extends Error {
  override readonly name = "RevokedError";
  constructor() {
    super("keybroker resolver: the token was revoked or expired");
  }
}

/** ClosedError: the Resolver was closed. */
export class ClosedError extends Error {
  override readonly name = "ClosedError";
  constructor() {
    super("keybroker resolver: closed");
  }
}

/**
 * CredentialKindError: a typed view of a resolution (`bedrock()`,
 * `azureOpenAI()`, `vertex()`) was asked of an answer of another kind. A
 * TypeError: the program asked the wrong question; keybroker answered.
 */
export class CredentialKindError extends TypeError {
  override readonly name = "CredentialKindError";
  /** The kind the view reads (`aws_bedrock`). */
  readonly expected: string;
  /** The kind the resolution holds (`api_key`). */
  readonly kind: string;

  constructor(expected: string, kind: string) {
    super(`keybroker: the resolved credential is of kind ${JSON.stringify(kind)}, not ${JSON.stringify(expected)}`);
    this.expected = expected;
    this.kind = kind;
  }
}
