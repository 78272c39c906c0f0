import { HttpStatusError, InvalidResponseError, OAuthError, RedirectError } from "./_errors.ts";
import {
  contentEncoding,
  DEFAULT_MAX_BODY_BYTES,
  isRedirect,
  type ReadResponse,
  readResponse,
} from "./_http.ts";
import { type DecodedJson, decodeJson } from "./_json.ts";
import { summarise } from "./_redact.ts";

/**
 * A successful token exchange response (RFC 8693 §2.2.1), with the fields in camelCase and every
 * field as the server sent it in `raw`.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.2.1}
 *
 * @example Reading a response that omits the optional fields
 * ```ts
 * import {
 *   processTokenExchangeResponse,
 *   type TokenExchangeResponse,
 * } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const result: TokenExchangeResponse = await processTokenExchangeResponse(
 *   Response.json({ access_token: "an-opaque-access-token", token_type: "Bearer" }),
 * );
 * assert.deepEqual(result, {
 *   accessToken: "an-opaque-access-token",
 *   issuedTokenType: undefined,
 *   tokenType: "Bearer",
 *   expiresIn: undefined,
 *   scope: undefined,
 *   refreshToken: undefined,
 *   raw: { access_token: "an-opaque-access-token", token_type: "Bearer" },
 * });
 * ```
 */
export interface TokenExchangeResponse {
  /** The issued token (`access_token`), whatever its type. */
  accessToken: string;
  /** The type of the issued token (`issued_token_type`), if the server said. */
  issuedTokenType: string | undefined;
  /** How to use the issued token (`token_type`), such as `Bearer` or `N_A`, if the server said. */
  tokenType: string | undefined;
  /** The lifetime of the issued token in seconds (`expires_in`), if the server said. */
  expiresIn: number | undefined;
  /** The scope of the issued token (`scope`), if the server said. */
  scope: string | undefined;
  /** A refresh token (`refresh_token`), if the server issued one. */
  refreshToken: string | undefined;
  /** Every field of the response as parsed. */
  raw: Record<string, unknown>;
}

/** What the exchange tells the response processor; not part of the public API. */
export interface ProcessInternals {
  /** How many attempts it took to get this response, for error messages. */
  attempts?: number;
  /** The answer is to another grant than RFC 8693's, which has no `issued_token_type`. */
  otherGrant?: boolean;
  /**
   * How an OAuth error names who refused, and what to check after it: the plugin's one check of a
   * provider names the provider ("Google's STS refused the OIDC token for …") rather than the
   * token endpoint.
   */
  refusal?: Refusal;
}

/** Who refused, and what to check, for an OAuth error's message. */
export interface Refusal {
  who: string;
  hint: string;
}

/**
 * Options for {@linkcode processTokenExchangeResponse}.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-5.2}
 *
 * @example Masking the subject token in an error page that echoes it
 * ```ts
 * import {
 *   HttpStatusError,
 *   type ProcessResponseOptions,
 *   processTokenExchangeResponse,
 * } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const options: ProcessResponseOptions = { secrets: ["my-subject-token"] };
 * const page = new Response("bad token my-subject-token", { status: 502 });
 * await assert.rejects(processTokenExchangeResponse(page, options), (error) => {
 *   assert.ok(error instanceof HttpStatusError);
 *   assert.equal(error.bodyExcerpt, "bad token ***");
 *   return true;
 * });
 * ```
 */
export interface ProcessResponseOptions {
  /** Secrets to mask in any text of the response that reaches an error message. */
  secrets?: readonly string[];
  /** Receives a line for each tolerated departure from the RFCs, never a secret. */
  onDebug?: (line: string) => void;
}

const WHAT = "Token endpoint";

/** The media type of a response without its parameters, such as `application/json`. */
function mediaType(response: ReadResponse): string | undefined {
  const type = response.headers.get("content-type")?.split(";")[0]?.trim().toLowerCase();
  return type ? summarise(type, [], 100) : undefined;
}

/**
 * What a body is, without a byte of it: its content type, its length and its encoding. A body
 * that cannot be used is described this way, never quoted, since it may hold a credential.
 */
function describeBody(response: ReadResponse): string {
  const encoding = contentEncoding(response.headers);
  return `${mediaType(response) ?? "no content type"}, ${response.body.byteLength} byte${
    response.body.byteLength === 1 ? "" : "s"
  }${encoding === undefined ? "" : `, Content-Encoding "${summarise(encoding, [], 40)}"`}`;
}

/** The longest issued token accepted: an exported variable over 128 KiB breaks later commands. */
export const MAX_TOKEN_LENGTH = 64 * 1024;

/**
 * The fewest characters an issued token may have: a shorter one could not be masked in a job's log
 * without masking ordinary words with it (`redactor add` masks every occurrence).
 */
export const MIN_TOKEN_LENGTH = 16;

/**
 * What is wrong with an issued token, or `undefined` if nothing is: RFC 6749 Appendix A.12
 * (`access-token = 1*VSCHAR`, VSCHAR being `%x20-7E`), and at most {@linkcode MAX_TOKEN_LENGTH}
 * characters. The answer never quotes the token.
 *
 * @param token The token.
 * @returns Which rule the token breaks, or `undefined`.
 */
export function tokenProblem(token: string): string | undefined {
  if (token.length > MAX_TOKEN_LENGTH) {
    return `is ${token.length} characters long, more than the ${MAX_TOKEN_LENGTH} allowed`;
  }
  const bad = /[^\x20-\x7e]/.exec(token);
  if (bad !== null) {
    const code = bad[0].codePointAt(0)!.toString(16).toUpperCase().padStart(4, "0");
    return `has U+${code} at character ${
      bad.index + 1
    }, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed`;
  }
  return undefined;
}

/**
 * What is wrong with a token the plugin exports or uses as a credential, or `undefined`: the rules
 * of {@linkcode tokenProblem}, and at least {@linkcode MIN_TOKEN_LENGTH} characters (a shorter one
 * could not be masked in a job's log). The answer never quotes the token.
 *
 * @param token The token.
 * @returns Which rule the token breaks, or `undefined`.
 */
export function issuedTokenProblem(token: string): string | undefined {
  return token.length < MIN_TOKEN_LENGTH
    ? `is ${token.length} characters long, fewer than the ${MIN_TOKEN_LENGTH} a token needs to be masked in logs without masking ordinary words`
    : tokenProblem(token);
}

/** Identifiers are shown as field names; anything else in a key position only counted. */
const FIELD_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,39}$/;

function describeJson(value: unknown): string {
  if (value === null) return "null";
  if (Array.isArray(value)) return "an array";
  return `a ${typeof value}`;
}

function optionalString(value: unknown): string | undefined {
  return typeof value === "string" ? value : undefined;
}

function toOAuthError(
  body: Record<string, unknown>,
  meta: { status: number; attempts: number },
  secrets: readonly string[],
  refusal: Refusal | undefined,
): OAuthError | undefined {
  const { status } = meta;
  if (typeof body.error !== "string" || body.error === "") return undefined;
  const error = summarise(body.error, secrets);
  const description = typeof body.error_description === "string"
    ? summarise(body.error_description, secrets, 500)
    : undefined;
  const uri = typeof body.error_uri === "string" ? summarise(body.error_uri, secrets) : undefined;
  const message =
    `${refusal?.who ?? `${WHAT} refused the exchange`}: HTTP ${status}, error "${error}"` +
    (description ? `: "${description}"` : "") + (uri ? ` (see ${uri})` : "") +
    (refusal?.hint ?? "");
  return new OAuthError(
    message,
    status,
    { error, errorDescription: description, errorUri: uri },
    meta,
  );
}

/**
 * Validates a token endpoint's response and returns the issued token, in a fixed order: a redirect,
 * the status, an OAuth error body, the body's JSON, then the required fields.
 *
 * Only HTTP 200 with a JSON object holding a non-empty string `access_token` succeeds, and the
 * token must be printable ASCII (`%x20-7E`, RFC 6749 Appendix A.12) of at most 64 KiB. A missing
 * `issued_token_type` or `token_type` is tolerated (real servers omit them) and reported through
 * `onDebug`. The body is read up to 1 MiB, counted after any decoding (a compressed body cannot
 * grow past it in memory). A body that cannot be used is described in the error (status, content
 * type, length), never quoted; text quoted from an error response is flattened onto one line,
 * with known secrets and credential fields (`access_token`, `refresh_token`, …) masked.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.2}
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-5.1}
 *
 * @param response The response to a token exchange request.
 * @param options Secrets to mask in error messages, and a debug sink.
 * @returns The issued token and the other fields of the response.
 * @throws {RedirectError} For a 3xx or an opaque redirect.
 * @throws {OAuthError} For an OAuth 2.0 error response (RFC 6749 §5.2), whatever the status.
 * @throws {HttpStatusError} For another error status; its message summarises the body.
 * @throws {InvalidResponseError} For a 2xx other than 200, a body that is not a JSON object, or no
 * usable `access_token` (missing, empty, not printable ASCII, under 16 characters or over 64 KiB).
 * @throws {ResponseTooLargeError} For a body over 1 MiB.
 *
 * @example Processing a response
 * ```ts
 * import { processTokenExchangeResponse } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const response = Response.json({
 *   access_token: "ya29.an-example-access-token",
 *   issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
 *   token_type: "Bearer",
 *   expires_in: 3599,
 * });
 * const result = await processTokenExchangeResponse(response);
 * assert.equal(result.accessToken, "ya29.an-example-access-token");
 * assert.equal(result.expiresIn, 3599);
 * ```
 */
export async function processTokenExchangeResponse(
  response: Response,
  options: ProcessResponseOptions = {},
): Promise<TokenExchangeResponse> {
  return processResponse(await readResponse(response, DEFAULT_MAX_BODY_BYTES, WHAT), options);
}

/** {@linkcode processTokenExchangeResponse} of a response already read. */
export function processResponse(
  response: ReadResponse,
  options: ProcessResponseOptions & ProcessInternals,
): TokenExchangeResponse {
  const secrets = options.secrets ?? [];
  const meta = { status: response.status, attempts: options.attempts ?? 1 };
  if (isRedirect(response)) throw redirectError(response, secrets, meta);
  const decoded = decodeJson(response.body);
  if (response.status !== 200) {
    throw statusError(response, decoded, secrets, meta, options.refusal);
  }
  if (decoded.kind !== "object") throw notAnObject(response, decoded, meta);
  const json = decoded.object;
  checkAccessToken(json, secrets, meta, options.refusal);
  return readFields(json, mediaType(response), options.onDebug, options.otherGrant === true);
}

type Meta = { status: number; attempts: number };

function redirectError(
  response: ReadResponse,
  secrets: readonly string[],
  meta: Meta,
): RedirectError {
  const location = response.headers.get("location") ?? undefined;
  const shown = location === undefined ? undefined : summarise(location, secrets);
  return new RedirectError(
    `${WHAT} redirected (HTTP ${response.status})${
      shown === undefined ? "" : ` to "${shown}"`
    }; the request was not resent: set the token endpoint to the final URL`,
    response.status,
    shown,
    meta,
  );
}

/** The error for a status other than 200: an OAuth error if the body is one, or else the status. */
function statusError(
  response: ReadResponse,
  decoded: DecodedJson,
  secrets: readonly string[],
  meta: Meta,
  refusal: Refusal | undefined,
): Error {
  const { status } = response;
  const oauthError = decoded.kind === "object"
    ? toOAuthError(decoded.object, meta, secrets, refusal)
    : undefined;
  if (oauthError) return oauthError;
  if (status >= 200 && status < 300) {
    return new InvalidResponseError(
      `${WHAT} answered HTTP ${status} (${
        describeBody(response)
      }), but a token response must be HTTP 200 (RFC 6749 §5.1)`,
      meta,
    );
  }
  const type = mediaType(response);
  const reason = response.statusText ? ` ${summarise(response.statusText, secrets, 100)}` : "";
  if (decoded.kind === "not-utf8") {
    return new HttpStatusError(
      `${WHAT} answered HTTP ${status}${reason} with a body that is not UTF-8 text (${
        describeBody(response)
      })`,
      status,
      type,
      "(a body that is not UTF-8 text)",
      meta,
    );
  }
  const excerpt = summarise(decoded.text, secrets);
  return new HttpStatusError(
    `${WHAT} answered HTTP ${status}${reason} (${type ?? "no content type"})` +
      (excerpt ? `: "${excerpt}"` : " with an empty body"),
    status,
    type,
    excerpt,
    meta,
  );
}

/** The error for an HTTP 200 whose body is not a JSON object. */
function notAnObject(
  response: ReadResponse,
  decoded: Exclude<DecodedJson, { kind: "object" }>,
  meta: Meta,
): InvalidResponseError {
  switch (decoded.kind) {
    case "not-utf8":
      return new InvalidResponseError(
        `${WHAT} answered HTTP 200 with a body that is not UTF-8 text (${describeBody(response)})`,
        meta,
      );
    case "not-json":
      return new InvalidResponseError(
        `${WHAT} answered HTTP 200 with ${
          decoded.text.trim() === "" ? "an empty body" : "a body that is not JSON"
        } (${describeBody(response)})`,
        meta,
      );
    case "other":
      return new InvalidResponseError(
        `${WHAT} answered HTTP 200 with ${
          describeJson(decoded.value)
        } where a JSON object was expected`,
        meta,
      );
  }
}

/** Checks the `access_token` of an HTTP 200 JSON object, or throws what is wrong with it. */
function checkAccessToken(
  json: Record<string, unknown>,
  secrets: readonly string[],
  meta: Meta,
  refusal: Refusal | undefined,
): asserts json is Record<string, unknown> & { access_token: string } {
  if (json.access_token === undefined || json.access_token === null) {
    const oauthError = toOAuthError(json, meta, secrets, refusal);
    if (oauthError) throw oauthError;
    const keys = Object.keys(json);
    const names = keys.filter((key) => FIELD_NAME.test(key));
    const others = keys.length - names.length;
    const fields = [...names, ...(others > 0 ? [`${others} other${others === 1 ? "" : "s"}`] : [])];
    throw new InvalidResponseError(
      `${WHAT} answered HTTP 200 without an "access_token" (fields: ${
        fields.join(", ") || "none"
      })`,
      meta,
    );
  }
  if (typeof json.access_token !== "string") {
    throw new InvalidResponseError(
      `${WHAT} answered HTTP 200 with ${
        describeJson(json.access_token)
      } "access_token" where a string was expected`,
      meta,
    );
  }
  if (json.access_token.trim() === "") {
    throw new InvalidResponseError(`${WHAT} answered HTTP 200 with an empty "access_token"`, meta);
  }
  const problem = issuedTokenProblem(json.access_token);
  if (problem !== undefined) {
    throw new InvalidResponseError(
      `${WHAT} answered HTTP 200 with an "access_token" that ${problem}`,
      meta,
    );
  }
}

/** The fields of a successful response, with each tolerated departure from the RFCs reported. */
function readFields(
  json: Record<string, unknown> & { access_token: string },
  type: string | undefined,
  debug: ((line: string) => void) | undefined,
  otherGrant: boolean,
): TokenExchangeResponse {
  if (type !== "application/json" && !type?.endsWith("+json")) {
    debug?.(
      `The response's content type is ${
        type ? `"${type}"` : "missing"
      }, not "application/json"; its JSON body was used anyway`,
    );
  }
  const issuedTokenType = optionalString(json.issued_token_type);
  const tokenType = optionalString(json.token_type);
  if (issuedTokenType === undefined && !otherGrant) {
    debug?.(
      `The response has no string "issued_token_type" (RFC 8693 §2.2.1 requires one); continuing`,
    );
  }
  if (tokenType === undefined) {
    debug?.(`The response has no string "token_type" (RFC 8693 §2.2.1 requires one); continuing`);
  }
  return {
    accessToken: json.access_token,
    issuedTokenType,
    tokenType,
    expiresIn: readExpiresIn(json.expires_in, debug),
    scope: optionalString(json.scope),
    refreshToken: optionalString(json.refresh_token),
    raw: json,
  };
}

/** `expires_in` as a number of seconds: a number, or a string of digits (reported), or none. */
function readExpiresIn(
  value: unknown,
  debug: ((line: string) => void) | undefined,
): number | undefined {
  if (typeof value === "number" && Number.isFinite(value) && value >= 0) return value;
  if (typeof value === "string" && /^\d+$/.test(value.trim())) {
    const seconds = Number(value);
    debug?.(
      `The response's "expires_in" is the string "${
        summarise(value, [], 40)
      }", not a number; read it as ${seconds}`,
    );
    return seconds;
  }
  if (value !== undefined) {
    debug?.(
      `The response's "expires_in" is ${
        describeJson(value)
      } that is not a number of seconds; ignored`,
    );
  }
  return undefined;
}
