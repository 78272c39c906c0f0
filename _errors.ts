/**
 * Error types thrown by the library. Every failure of an exchange or a discovery is a
 * {@linkcode TokenExchangeError} with a machine-readable `code`; bad arguments are a `TypeError`.
 *
 * @module
 */

/**
 * What went wrong, as a stable string a caller can switch on: one per subclass of
 * {@linkcode TokenExchangeError}.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.2.2}
 *
 * @example Choosing what to do from the code alone
 * ```ts
 * import type { TokenExchangeErrorCode } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const transient = (code: TokenExchangeErrorCode) => code === "network" || code === "timeout";
 * assert.equal(transient("timeout"), true);
 * assert.equal(transient("oauth_error"), false);
 * ```
 */
export type TokenExchangeErrorCode =
  | "oauth_error"
  | "http_error"
  | "redirect"
  | "network"
  | "timeout"
  | "invalid_response"
  | "response_too_large"
  | "discovery";

/**
 * Options common to every {@linkcode TokenExchangeError}: the HTTP status, the number of attempts
 * and, as for any `Error`, the `cause`.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.2.2}
 *
 * @example Carrying the status and the attempts
 * ```ts
 * import { TokenExchangeError, type TokenExchangeErrorOptions } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const options: TokenExchangeErrorOptions = { status: 503, attempts: 4 };
 * const error = new TokenExchangeError("Token endpoint answered HTTP 503", "http_error", options);
 * assert.equal(error.message, "Token endpoint answered HTTP 503 (after 4 attempts)");
 * ```
 */
export interface TokenExchangeErrorOptions extends ErrorOptions {
  /** The HTTP status of the response that caused the error, if there was one. */
  status?: number;
  /** How many HTTP attempts were made before giving up. */
  attempts?: number;
}

/**
 * The base class of every error the exchange and discovery functions throw for a failure that is
 * not a bad argument.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.2.2}
 *
 * @example Telling failures apart
 * ```ts
 * import { TimeoutError, TokenExchangeError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error: unknown = new TimeoutError("Token endpoint did not answer", 10_000);
 * assert.ok(error instanceof TokenExchangeError);
 * assert.equal(error.code, "timeout");
 * assert.equal(error.name, "TimeoutError");
 * ```
 */
export class TokenExchangeError extends Error {
  /** The name of the error class. */
  override name = "TokenExchangeError";
  /** What went wrong, as a stable string. */
  readonly code: TokenExchangeErrorCode;
  /** The HTTP status of the response that caused the error, if there was one. */
  readonly status: number | undefined;
  /** How many HTTP attempts were made (1 when the first attempt failed for good). */
  readonly attempts: number;

  /**
   * Creates an error.
   *
   * @param message One line that says what is wrong.
   * @param code What went wrong, as a stable string.
   * @param options The HTTP status, the number of attempts and the cause.
   */
  constructor(message: string, code: TokenExchangeErrorCode, options?: TokenExchangeErrorOptions) {
    const attempts = options?.attempts ?? 1;
    super(attempts > 1 ? `${message} (after ${attempts} attempts)` : message, options);
    this.code = code;
    this.status = options?.status;
    this.attempts = attempts;
  }
}

/**
 * The fields of an OAuth 2.0 error response (RFC 6749 §5.2), in camelCase.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-5.2}
 *
 * @example The fields of an `invalid_grant` refusal
 * ```ts
 * import { OAuthError, type OAuthErrorFields } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const fields: OAuthErrorFields = { error: "invalid_grant", errorDescription: "expired" };
 * const error = new OAuthError("Token endpoint refused the exchange", 400, fields);
 * assert.equal(error.errorDescription, "expired");
 * assert.equal(error.errorUri, undefined);
 * ```
 */
export interface OAuthErrorFields {
  /** The `error` code, such as `invalid_grant` or `invalid_target`. */
  error: string;
  /** The `error_description`, if the server sent one. */
  errorDescription?: string | undefined;
  /** The `error_uri`, if the server sent one. */
  errorUri?: string | undefined;
}

/**
 * The token endpoint answered with an OAuth 2.0 error response (RFC 6749 §5.2, RFC 8693 §2.2.2).
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-5.2}
 *
 * @example Reading the OAuth error
 * ```ts
 * import { OAuthError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new OAuthError("Token endpoint refused the exchange", 400, {
 *   error: "invalid_target",
 * });
 * assert.deepEqual([error.code, error.error, error.status], ["oauth_error", "invalid_target", 400]);
 * ```
 */
export class OAuthError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "OAuthError";
  /** The HTTP status of the response. */
  override readonly status: number;
  /** The `error` code, such as `invalid_grant` or `invalid_target`. */
  readonly error: string;
  /** The `error_description`, if the server sent one (with any secret in it masked). */
  readonly errorDescription: string | undefined;
  /** The `error_uri`, if the server sent one. */
  readonly errorUri: string | undefined;

  /**
   * Creates an error from an OAuth error response.
   *
   * @param message One line that says what is wrong.
   * @param status The HTTP status of the response.
   * @param fields The `error`, `error_description` and `error_uri` of the response.
   * @param options The number of attempts and the cause.
   */
  constructor(
    message: string,
    status: number,
    fields: OAuthErrorFields,
    options?: TokenExchangeErrorOptions,
  ) {
    super(message, "oauth_error", { ...options, status });
    this.status = status;
    this.error = fields.error;
    this.errorDescription = fields.errorDescription;
    this.errorUri = fields.errorUri;
  }
}

/**
 * The server answered with an HTTP error whose body is not an OAuth error response, such as an
 * HTML page from a proxy.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-15}
 *
 * @example Reading the summary
 * ```ts
 * import { HttpStatusError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new HttpStatusError("Bad gateway", 502, "text/html", "<h1>Bad gateway</h1>");
 * assert.deepEqual([error.code, error.status, error.contentType], ["http_error", 502, "text/html"]);
 * assert.equal(error.bodyExcerpt, "<h1>Bad gateway</h1>");
 * ```
 */
export class HttpStatusError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "HttpStatusError";
  /** The HTTP status of the response. */
  override readonly status: number;
  /** The `Content-Type` of the response, if it had one. */
  readonly contentType: string | undefined;
  /** The first 200 characters of the body, with any secret in it masked. */
  readonly bodyExcerpt: string;

  /**
   * Creates an error from an HTTP error response.
   *
   * @param message One line that says what is wrong.
   * @param status The HTTP status of the response.
   * @param contentType The `Content-Type` of the response.
   * @param bodyExcerpt The start of the body, with secrets masked.
   * @param options The number of attempts and the cause.
   */
  constructor(
    message: string,
    status: number,
    contentType: string | undefined,
    bodyExcerpt: string,
    options?: TokenExchangeErrorOptions,
  ) {
    super(message, "http_error", { ...options, status });
    this.status = status;
    this.contentType = contentType;
    this.bodyExcerpt = bodyExcerpt;
  }
}

/**
 * The server answered with a redirect. Redirects are never followed for a token request, so the
 * credentials in its body are sent only to the configured endpoint.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-15.4}
 *
 * @example Reading where it pointed
 * ```ts
 * import { RedirectError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new RedirectError("Redirected", 308, "https://sts.example.com/v2/token");
 * assert.equal(error.code, "redirect");
 * assert.equal(error.location, "https://sts.example.com/v2/token");
 * ```
 */
export class RedirectError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "RedirectError";
  /** The `Location` the server pointed to, if it was visible. */
  readonly location: string | undefined;

  /**
   * Creates an error for a redirect.
   *
   * @param message One line that says what is wrong.
   * @param status The HTTP status (0 where the platform hides it).
   * @param location The `Location` header, if it was visible.
   * @param options The number of attempts and the cause.
   */
  constructor(
    message: string,
    status: number,
    location: string | undefined,
    options?: TokenExchangeErrorOptions,
  ) {
    super(message, "redirect", { ...options, status });
    this.location = location;
  }
}

/**
 * The request could not be sent or its response could not be read (connection refused or reset,
 * DNS failure, TLS failure, or a permission the runtime denied).
 *
 * @see {@link https://fetch.spec.whatwg.org/#concept-network-error}
 *
 * @example Reading the cause
 * ```ts
 * import { NetworkError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const cause = new TypeError("Connection refused");
 * const error = new NetworkError("Cannot reach the endpoint", { cause });
 * assert.equal(error.code, "network");
 * assert.equal(error.cause, cause);
 * ```
 */
export class NetworkError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "NetworkError";

  /**
   * Creates an error for a failed connection.
   *
   * @param message One line that says what is wrong.
   * @param options The number of attempts and the cause.
   */
  constructor(message: string, options?: TokenExchangeErrorOptions) {
    super(message, "network", options);
  }
}

/**
 * An attempt did not finish (headers and body) within the per-attempt timeout.
 *
 * @see {@link https://dom.spec.whatwg.org/#dom-abortsignal-timeout}
 *
 * @example Reading the timeout
 * ```ts
 * import { TimeoutError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new TimeoutError("No answer within 10 s", 10_000, { attempts: 2 });
 * assert.equal(error.timeout, 10_000);
 * assert.equal(error.message, "No answer within 10 s (after 2 attempts)");
 * ```
 */
export class TimeoutError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "TimeoutError";
  /** The per-attempt timeout in milliseconds. */
  readonly timeout: number;

  /**
   * Creates an error for an attempt that ran out of time.
   *
   * @param message One line that says what is wrong.
   * @param timeout The per-attempt timeout in milliseconds.
   * @param options The number of attempts and the cause.
   */
  constructor(message: string, timeout: number, options?: TokenExchangeErrorOptions) {
    super(message, "timeout", options);
    this.timeout = timeout;
  }
}

/**
 * The server answered, but not with what RFC 6749 §5.1 and RFC 8693 §2.2.1 describe (a status other
 * than 200, a body that is not a JSON object, no non-empty string `access_token`, …).
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.2.1}
 *
 * @example Reading the status
 * ```ts
 * import { InvalidResponseError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new InvalidResponseError("No access_token", { status: 200 });
 * assert.deepEqual([error.code, error.status], ["invalid_response", 200]);
 * ```
 */
export class InvalidResponseError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "InvalidResponseError";

  /**
   * Creates an error for a response that breaks the protocol.
   *
   * @param message One line that says what is wrong.
   * @param options The HTTP status, the number of attempts and the cause.
   */
  constructor(message: string, options?: TokenExchangeErrorOptions) {
    super(message, "invalid_response", options);
  }
}

/**
 * The response body is larger than the size cap (announced in `Content-Length`, or found while
 * reading), so it was not read further.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-8.6}
 *
 * @example Reading the cap
 * ```ts
 * import { ResponseTooLargeError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new ResponseTooLargeError("Too large", 1_048_576);
 * assert.deepEqual([error.code, error.limit], ["response_too_large", 1_048_576]);
 * ```
 */
export class ResponseTooLargeError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "ResponseTooLargeError";
  /** The size cap in bytes. */
  readonly limit: number;

  /**
   * Creates an error for an oversized body.
   *
   * @param message One line that says what is wrong.
   * @param limit The size cap in bytes.
   * @param options The HTTP status, the number of attempts and the cause.
   */
  constructor(message: string, limit: number, options?: TokenExchangeErrorOptions) {
    super(message, "response_too_large", options);
    this.limit = limit;
  }
}

/**
 * The issuer's metadata could not be found or does not name a usable token endpoint.
 *
 * @see {@link https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig}
 * @see {@link https://www.rfc-editor.org/rfc/rfc8414#section-3}
 *
 * @example Reading the code
 * ```ts
 * import { DiscoveryError, TokenExchangeError } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const error = new DiscoveryError("No token_endpoint in the metadata");
 * assert.ok(error instanceof TokenExchangeError);
 * assert.equal(error.code, "discovery");
 * ```
 */
export class DiscoveryError extends TokenExchangeError {
  /** The name of the error class. */
  override name = "DiscoveryError";

  /**
   * Creates an error for a failed discovery.
   *
   * @param message One line that says what is wrong.
   * @param options The HTTP status, the number of attempts and the cause.
   */
  constructor(message: string, options?: TokenExchangeErrorOptions) {
    super(message, "discovery", options);
  }
}
