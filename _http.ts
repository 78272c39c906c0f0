// Sending requests: one HTTP request with a per-attempt timeout, retries with backoff, jitter and
// Retry-After, no redirects, and a cap on the body. Which URLs a request may go to is _url.ts's.

import { NetworkError, ResponseTooLargeError, TimeoutError } from "./_errors.ts";
import { oneLine, summarise } from "./_redact.ts";

/** Statuses that say "try again later" (RFC 9110 §15, RFC 6585 §4). */
const RETRYABLE_STATUSES = new Set([408, 429, 500, 502, 503, 504]);
/** The first backoff, doubled on each retry. */
const INITIAL_BACKOFF_MS = 500;
/** The longest backoff between two attempts. */
const MAX_BACKOFF_MS = 8_000;
/** The longest `Retry-After` honoured. */
export const MAX_RETRY_AFTER_MS = 30_000;
/** The largest response body read, in bytes. */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024;
/** The per-attempt timeout, in milliseconds. */
export const DEFAULT_TIMEOUT_MS = 10_000;
/** Extra attempts on transient failure. */
export const DEFAULT_RETRIES = 3;

/**
 * How requests are sent, shared by the exchange and discovery.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-10.2.3}
 *
 * @example A caller's deadline over the whole exchange
 * ```ts
 * import type { HttpOptions } from "@equinixmetal/token-exchange";
 *
 * const http: HttpOptions = { signal: AbortSignal.timeout(30_000), timeout: 5_000, retries: 2 };
 * ```
 */
export interface HttpOptions {
  /** The `fetch` to use. @default {globalThis.fetch} */
  fetch?: typeof fetch;
  /** Aborts every attempt and wait at once; the abort reason is thrown as is. */
  signal?: AbortSignal;
  /** Time for one attempt (headers and body), in milliseconds. @default {10000} */
  timeout?: number;
  /** Extra attempts on network errors, timeouts and 408, 429, 500, 502, 503, 504. @default {3} */
  retries?: number;
  /** Receives one line per step, never a secret. */
  onDebug?: (line: string) => void;
}

/** Hooks for tests that need to control time and chance. Not part of the public API. */
export interface HttpInternals {
  /** Waits; must reject with the signal's reason when it aborts. */
  sleep?: (ms: number, signal?: AbortSignal) => Promise<void>;
  /** A number in [0, 1) for jitter. */
  random?: () => number;
  /** The current time in milliseconds since the epoch, for Retry-After dates. */
  now?: () => number;
  /** The body size cap in bytes. */
  maxBodyBytes?: number;
  /**
   * The injected `fetch` is the platform's own (Deno's `fetch` with a client of its own): its HTTP
   * framing holds a body to its `Content-Length`, and it ends the request when the signal aborts.
   */
  platformFetch?: boolean;
  /**
   * When the whole run (the CLI's: discovery, every attempt, every wait) must end, as `now()` counts,
   * and how long it had; no attempt or wait goes past it.
   */
  deadline?: { at: number; ms: number };
}

/**
 * How long one run of the CLI may take, whatever a server does: (retries + 1) × timeout, and the
 * longest single wait a `Retry-After` may ask for.
 *
 * @param timeout The time for one attempt, in milliseconds.
 * @param retries The extra attempts.
 * @returns The run's budget in milliseconds.
 */
export function runBudget(timeout: number, retries: number): number {
  return (retries + 1) * timeout + MAX_RETRY_AFTER_MS;
}

/** Checks the options shared by every request. */
export function checkHttpOptions(options: HttpOptions): void {
  const { timeout, retries } = options;
  if (timeout !== undefined && !(Number.isFinite(timeout) && timeout > 0)) {
    throw new TypeError(
      `Cannot use timeout "${timeout}": it must be a number of milliseconds above 0`,
    );
  }
  if (retries !== undefined && !(Number.isSafeInteger(retries) && retries >= 0)) {
    throw new TypeError(`Cannot use retries "${retries}": it must be a whole number, 0 or more`);
  }
}

function abortableSleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** Resolves like `promise`, or rejects with the signal's reason as soon as it aborts. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

/**
 * Parses a `Retry-After` header (RFC 9110 §10.2.3): delay-seconds or an HTTP date.
 *
 * @returns The wait in milliseconds, capped at {@linkcode MAX_RETRY_AFTER_MS}, or `undefined`
 * when the header is absent or unreadable.
 */
export function parseRetryAfter(value: string | null, now: number): number | undefined {
  if (value === null) return undefined;
  const text = value.trim();
  let ms: number;
  if (/^\d+$/.test(text)) {
    ms = Number(text) * 1000;
  } else {
    const date = Date.parse(text);
    if (Number.isNaN(date) || !/[a-z]/i.test(text)) return undefined;
    ms = Math.max(0, date - now);
  }
  return Math.min(ms, MAX_RETRY_AFTER_MS);
}

/** The exponential backoff with equal jitter before retry number `retry` (1-based). */
export function backoffDelay(retry: number, random: () => number): number {
  const ceiling = Math.min(MAX_BACKOFF_MS, INITIAL_BACKOFF_MS * 2 ** (retry - 1));
  return ceiling / 2 + random() * (ceiling / 2);
}

function seconds(ms: number): string {
  return `${Number((ms / 1000).toFixed(3))} s`;
}

/** The `Content-Encoding` of a response, if it has one other than `identity`. */
export function contentEncoding(headers: Headers): string | undefined {
  const value = headers.get("content-encoding")?.trim().toLowerCase();
  return value === undefined || value === "" || value === "identity" ? undefined : value;
}

function tooLarge(response: Response, limit: number, what: string): ResponseTooLargeError {
  const encoding = contentEncoding(response.headers);
  return new ResponseTooLargeError(
    `${what} sent a body of more than ${limit} bytes` +
      (encoding === undefined ? "" : ` (Content-Encoding "${summarise(encoding, [], 40)}")`),
    limit,
    { status: response.status },
  );
}

/**
 * Reads the whole body, refusing more than `limit` bytes, and never holding more than `limit`
 * bytes (plus one chunk) in memory. `framed` says the response comes from the platform's fetch,
 * whose HTTP framing holds a body to its `Content-Length`.
 *
 * A `fetch` decodes a compressed body as it is read (Deno: gzip and br; Node.js: deflate and zstd
 * as well) and leaves `Content-Length` at the compressed size, so a compressed body is always
 * counted chunk by chunk as it is decoded: 1 KiB of gzip can be 1 MiB of JSON, and 1 MiB of gzip
 * 1 GiB.
 *
 * @throws {ResponseTooLargeError} When the body, or its declared `Content-Length`, is over `limit`.
 */
export async function readCapped(
  response: Response,
  limit: number,
  what: string,
  framed = false,
): Promise<Uint8Array<ArrayBuffer>> {
  const declared = Number(response.headers.get("content-length"));
  if (declared > limit) {
    await response.body?.cancel().catch(() => {});
    throw new ResponseTooLargeError(
      `${what} announced a ${declared}-byte body, more than the ${limit}-byte limit`,
      limit,
      { status: response.status },
    );
  }
  if (response.body === null) return new Uint8Array();
  // From the platform's fetch, HTTP framing holds a body that is not encoded to its
  // Content-Length: read it at once (about 1 ms faster than a stream reader in a short-lived
  // process). Otherwise count the bytes as they come, decoded.
  if (framed && declared > 0 && contentEncoding(response.headers) === undefined) {
    const body = new Uint8Array(await response.arrayBuffer());
    if (body.byteLength > limit) throw tooLarge(response, limit, what);
    return body;
  }
  const chunks: Uint8Array[] = [];
  let size = 0;
  const reader = response.body.getReader();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      size += value.byteLength;
      if (size > limit) {
        await reader.cancel().catch(() => {});
        throw tooLarge(response, limit, what);
      }
      chunks.push(value);
    }
  } finally {
    reader.releaseLock();
  }
  const body = new Uint8Array(size);
  let offset = 0;
  for (const chunk of chunks) {
    body.set(chunk, offset);
    offset += chunk.byteLength;
  }
  return body;
}

/** A response whose body has been read: what the response processors validate. */
export interface ReadResponse {
  /** The HTTP status; 0 for an opaque redirect. */
  status: number;
  /** The HTTP reason phrase, if any. */
  statusText: string;
  /** The response headers. */
  headers: Headers;
  /** `opaqueredirect` where the platform hides a redirect (browsers). */
  type: ResponseType;
  /** The body, empty for a redirect. */
  body: Uint8Array;
}

/**
 * Reads a response's body (at most `limit` bytes, none for a redirect) into a {@linkcode ReadResponse}.
 *
 * @throws {ResponseTooLargeError} When the body is over `limit`.
 */
export async function readResponse(
  response: Response,
  limit: number,
  what: string,
  framed = false,
): Promise<ReadResponse> {
  const { status, statusText, headers, type } = response;
  let body: Uint8Array;
  if (isRedirect(response)) {
    await response.body?.cancel().catch(() => {});
    body = new Uint8Array();
  } else {
    body = await readCapped(response, limit, what, framed);
  }
  return { status, statusText, headers, type, body };
}

/**
 * Reports whether a response is a redirect: a 3xx, or the opaque redirect a browser's `fetch`
 * gives for `redirect: "manual"`. The one test every reader of a response uses.
 *
 * @param response The response, read or not.
 * @returns `true` for a redirect.
 */
export function isRedirect(response: Pick<ReadResponse, "status" | "type">): boolean {
  return response.type === "opaqueredirect" || (response.status >= 300 && response.status < 400);
}

/** A failure that another attempt cannot mend: the runtime refused the connection itself. */
function isPermanent(error: unknown): boolean {
  const name = error instanceof Error ? error.name : "";
  return name === "NotCapable" || name === "PermissionDenied" ||
    certificateProblem(describeCause(error)) !== undefined;
}

/**
 * What is wrong with a server's certificate, from what the platform said, or `undefined` when the
 * failure was not about one: `untrusted` when no CA this client trusts issued it (a private CA's),
 * `invalid` when it is expired, for another name, or otherwise bad. Neither gets better by retrying.
 */
export function certificateProblem(cause: string): "untrusted" | "invalid" | undefined {
  if (/UnknownIssuer|self[- ]signed certificate|unable to get (?:local )?issuer/i.test(cause)) {
    return "untrusted";
  }
  return /invalid peer certificate|certificate (?:has expired|verify failed)/i.test(cause)
    ? "invalid"
    : undefined;
}

/** The message for a request that got no response. */
function unreachable(what: string, target: string, cause: string): string {
  switch (certificateProblem(cause)) {
    case "untrusted":
      return `${what} "${target}" presented a certificate that is not trusted here, from a CA this machine does not know (${cause})`;
    case "invalid":
      return `${what} "${target}" presented a certificate that is not valid (${cause})`;
    default:
      // "token endpoint", "issuer"; a name such as "AWS STS", "Vault" or "Google IAM" stays.
      return `Cannot reach ${
        /^(?:Token|Issuer|Revocation)\b/.test(what) ? what[0]!.toLowerCase() + what.slice(1) : what
      } "${target}": ${cause}`;
  }
}

/**
 * What went wrong, from the error and its causes. Deno 2 and Node throw `TypeError("fetch failed")`
 * and put what happened in `cause` (Deno: "error sending request for url (…): client error
 * (Connect): tcp connect error: Connection refused (os error 111)").
 */
function describeCause(error: unknown): string {
  const messages: string[] = [];
  let cause = error;
  for (let depth = 0; cause !== undefined && cause !== null && depth < 5; depth++) {
    const message = oneLine(cause instanceof Error ? cause.message : String(cause));
    if (message !== "" && !messages.some((seen) => seen.includes(message))) messages.push(message);
    cause = cause instanceof Error ? cause.cause : undefined;
  }
  // The generic wrapper says nothing its cause does not.
  if (messages.length > 1 && messages[0] === "fetch failed") messages.shift();
  return messages.join(": ") || "unknown error";
}

/**
 * Sends a request with timeouts and retries, never following a redirect, and returns the response
 * with its body read into memory (at most the body size cap), and how many attempts it took.
 *
 * A redirect is returned without its body. A retryable status is returned once no retries are
 * left.
 *
 * @param url Where to send it.
 * @param init The method, headers and body; `redirect` and `signal` are set here.
 * @param what What the server is, for messages ("Token endpoint").
 * @throws {NetworkError} When no response arrives.
 * @throws {TimeoutError} When the last attempt times out.
 * @throws {ResponseTooLargeError} When the body is over the cap.
 */
export async function sendWithRetries(
  url: URL,
  init: RequestInit,
  what: string,
  options: HttpOptions & HttpInternals = {},
): Promise<{ response: ReadResponse; attempts: number }> {
  const fetchFn = options.fetch ?? globalThis.fetch;
  const platform = options.fetch === undefined || options.platformFetch === true;
  const timeout = options.timeout ?? DEFAULT_TIMEOUT_MS;
  const retries = options.retries ?? DEFAULT_RETRIES;
  const sleep = options.sleep ?? abortableSleep;
  const random = options.random ?? Math.random;
  const now = options.now ?? Date.now;
  const limit = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const debug = options.onDebug;
  const caller = options.signal;
  const target = `${url.origin}${url.pathname}`;
  const attempts = retries + 1;
  const deadline = options.deadline;
  const left = () => deadline === undefined ? Infinity : deadline.at - now();
  const pastDeadline = (made: number) =>
    new TimeoutError(
      `${what} "${target}" kept this run waiting past its deadline, (retries + 1) × timeout + 30 s = ${
        seconds(deadline!.ms)
      } for every request and wait of the run`,
      deadline!.ms,
      { attempts: made },
    );

  for (let attempt = 1;; attempt++) {
    caller?.throwIfAborted();
    if (left() <= 0) throw pastDeadline(attempt - 1);
    debug?.(`${init.method ?? "GET"} ${target} (attempt ${attempt} of ${attempts})`);
    // AbortSignal.timeout rather than setTimeout: in Deno the first setTimeout costs ~3 ms of
    // start-up, a fifth of a whole exchange.
    const attemptTimeout = Math.min(timeout, left());
    const timer = AbortSignal.timeout(attemptTimeout);
    const signal = caller ? AbortSignal.any([caller, timer]) : timer;
    // The platform's fetch ends the request and its body when the signal aborts; an injected
    // fetch may not, so its promises race the signal.
    const bounded = <T>(promise: Promise<T>) => platform ? promise : raceAbort(promise, signal);
    let retryReason: string;
    let retryAfter: number | undefined;
    try {
      const response = await bounded(fetchFn(url, { ...init, redirect: "manual", signal }));
      debug?.(
        `${what} answered HTTP ${response.status}${
          response.statusText ? ` ${summarise(response.statusText, [], 100)}` : ""
        }`,
      );
      if (RETRYABLE_STATUSES.has(response.status) && attempt < attempts) {
        await response.body?.cancel().catch(() => {});
        retryReason = `HTTP ${response.status}`;
        retryAfter = parseRetryAfter(response.headers.get("retry-after"), now());
      } else {
        const read = await bounded(readResponse(response, limit, what, platform));
        return { response: read, attempts: attempt };
      }
    } catch (error) {
      if (caller?.aborted) throw caller.reason;
      if (error instanceof ResponseTooLargeError) {
        throw new ResponseTooLargeError(error.message, error.limit, {
          status: error.status,
          attempts: attempt,
        });
      }
      if (timer.aborted) {
        if (attemptTimeout < timeout) throw pastDeadline(attempt);
        if (attempt >= attempts) {
          throw new TimeoutError(
            `${what} "${target}" did not answer within ${seconds(timeout)}`,
            timeout,
            { attempts: attempt },
          );
        }
        retryReason = `no answer within ${seconds(timeout)}`;
      } else if (attempt < attempts && !isPermanent(error)) {
        retryReason = describeCause(error);
      } else {
        throw new NetworkError(
          unreachable(what, target, describeCause(error)),
          { cause: error, attempts: attempt },
        );
      }
    }
    const wait = retryAfter ?? backoffDelay(attempt, random);
    if (wait >= left()) throw pastDeadline(attempt);
    debug?.(
      `${retryReason}; retrying in ${seconds(wait)}${
        retryAfter === undefined ? "" : " (as Retry-After asks)"
      }`,
    );
    await sleep(wait, caller);
  }
}
