/**
 * The identifiers RFC 8693 and RFC 6749 define for the token exchange grant and token types, and
 * this package's version.
 *
 * @module
 */

// A constant rather than a JSON import of deno.json, which costs ~0.4 ms of start-up (see
// docs/performance.md); a test keeps the two equal.
/**
 * The version of this package, as the `User-Agent` of every request names it.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc9110#section-10.1.5}
 *
 * @example Reading the version
 * ```ts
 * import { VERSION } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * assert.match(VERSION, /^\d+\.\d+\.\d+/);
 * ```
 */
export const VERSION: string = "2.1.0";

/** The `User-Agent` sent with every request. */
export const USER_AGENT: string = `token-exchange/${VERSION}`;

/**
 * The `grant_type` of a token exchange request.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @example Every request carries it
 * ```ts
 * import {
 *   buildTokenExchangeRequest,
 *   GRANT_TYPE_TOKEN_EXCHANGE,
 * } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const { body } = buildTokenExchangeRequest({
 *   tokenEndpoint: "https://sts.example.com/token",
 *   subjectToken: "an-opaque-token",
 * });
 * assert.equal(body.get("grant_type"), GRANT_TYPE_TOKEN_EXCHANGE);
 * assert.equal(GRANT_TYPE_TOKEN_EXCHANGE, "urn:ietf:params:oauth:grant-type:token-exchange");
 * ```
 */
export const GRANT_TYPE_TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

/** The grant type of RFC 7523 §2.1: a JWT as an authorization grant (`assertion`). */
export const GRANT_TYPE_JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer";

/** The client assertion type of RFC 7523 §2.2: a JWT that authenticates the client. */
export const CLIENT_ASSERTION_TYPE_JWT_BEARER =
  "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/**
 * Token type identifiers (RFC 8693 §3), for `subjectTokenType`, `actorTokenType` and
 * `requestedTokenType`.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-3}
 *
 * @example Asking for an access token in exchange for an ID token
 * ```ts
 * import { buildTokenExchangeRequest, TOKEN_TYPES } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const { body } = buildTokenExchangeRequest({
 *   tokenEndpoint: "https://dex.example.com/token",
 *   subjectToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
 *   subjectTokenType: TOKEN_TYPES.idToken,
 *   requestedTokenType: TOKEN_TYPES.accessToken,
 * });
 * assert.equal(body.get("subject_token_type"), "urn:ietf:params:oauth:token-type:id_token");
 * assert.equal(body.get("requested_token_type"), "urn:ietf:params:oauth:token-type:access_token");
 * ```
 */
export const TOKEN_TYPES = {
  /** A JWT (RFC 7519); the default subject token type. */
  jwt: "urn:ietf:params:oauth:token-type:jwt",
  /** An OAuth 2.0 access token. */
  accessToken: "urn:ietf:params:oauth:token-type:access_token",
  /** An OAuth 2.0 refresh token. */
  refreshToken: "urn:ietf:params:oauth:token-type:refresh_token",
  /** An OpenID Connect ID token. */
  idToken: "urn:ietf:params:oauth:token-type:id_token",
  /** A base64url-encoded SAML 1.1 assertion. */
  saml1: "urn:ietf:params:oauth:token-type:saml1",
  /** A base64url-encoded SAML 2.0 assertion. */
  saml2: "urn:ietf:params:oauth:token-type:saml2",
} as const;
