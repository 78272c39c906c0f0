import {
  checkHttpOptions,
  type HttpInternals,
  type HttpOptions,
  sendWithRetries,
} from "./_http.ts";
import { MASK } from "./_redact.ts";
import { buildRequest, type TokenExchangeParameters } from "./_request.ts";
import { type ProcessInternals, processResponse, type TokenExchangeResponse } from "./_response.ts";

/**
 * Options for {@linkcode exchangeToken}: the request parameters and how to send it.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @example A confidential client with a short timeout and no retries
 * ```ts
 * import type { ExchangeTokenOptions } from "@equinixmetal/token-exchange";
 *
 * const options: ExchangeTokenOptions = {
 *   tokenEndpoint: "https://sts.example.com/token",
 *   subjectToken: "an-opaque-token",
 *   clientId: "ci",
 *   clientSecret: "s3cret",
 *   clientAuth: "basic",
 *   timeout: 2_000,
 *   retries: 0,
 * };
 * ```
 */
export interface ExchangeTokenOptions extends TokenExchangeParameters, HttpOptions {}

/** Form fields whose values are never shown. */
const SECRET_FIELDS = new Set([
  "subject_token",
  "actor_token",
  "client_secret",
  "assertion",
  "client_assertion",
]);

/** Describes the form for debug output, with every secret replaced by its length. */
export function describeForm(body: URLSearchParams): string {
  return [...body].map(([name, value]) =>
    SECRET_FIELDS.has(name) ? `${name}=${MASK} (${value.length} characters)` : `${name}=${value}`
  ).join(", ");
}

/**
 * Exchanges a token at an OAuth 2.0 token endpoint with RFC 8693 Token Exchange.
 *
 * It sends one `POST` with the form parameters that are set, never follows a redirect, gives each
 * attempt `timeout` milliseconds for headers and body, and retries network errors, timeouts and
 * 408, 429, 500, 502, 503 and 504 with exponential backoff and jitter (honouring `Retry-After`, up
 * to 30 s). Other 4xx are never retried.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2}
 *
 * @param options The endpoint, the subject token, the optional RFC 8693 parameters, client
 * authentication and how to send the request.
 * @returns The issued token and the other fields of the response.
 * @throws {TypeError} If an option is missing or malformed (checked before anything is sent).
 * @throws {OAuthError} When the server refuses the exchange with an OAuth error response.
 * @throws {TokenExchangeError} For every other failure; its `code` says which.
 *
 * @example Exchanging a CI job's OIDC token for a Google Cloud access token
 * ```ts ignore
 * import { exchangeToken } from "@equinixmetal/token-exchange";
 *
 * const { accessToken, expiresIn } = await exchangeToken({
 *   tokenEndpoint: "https://sts.googleapis.com/v1/token",
 *   subjectToken: Deno.env.get("OIDC_TOKEN")!,
 *   audience:
 *     "//iam.googleapis.com/projects/123/locations/global/workloadIdentityPools/ci/providers/buildkite",
 *   scope: "https://www.googleapis.com/auth/cloud-platform",
 *   requestedTokenType: "urn:ietf:params:oauth:token-type:access_token",
 * });
 * console.log(`Token valid for ${expiresIn} s`);
 * ```
 *
 * @example Testing code that exchanges tokens, with an injected `fetch`
 * ```ts
 * import { exchangeToken } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const sent: URLSearchParams[] = [];
 * const fakeFetch: typeof fetch = async (_url, init) => {
 *   sent.push(new URLSearchParams(String(init?.body)));
 *   return Response.json({
 *     access_token: "issued-access-token",
 *     issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
 *     token_type: "Bearer",
 *   });
 * };
 * const result = await exchangeToken({
 *   tokenEndpoint: "https://sts.example.com/token",
 *   subjectToken: "subject",
 *   audience: "https://api.example.com",
 *   fetch: fakeFetch,
 * });
 * assert.equal(result.accessToken, "issued-access-token");
 * assert.deepEqual([...sent[0]!], [
 *   ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
 *   ["subject_token", "subject"],
 *   ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"],
 *   ["audience", "https://api.example.com"],
 * ]);
 * ```
 */
export function exchangeToken(options: ExchangeTokenOptions): Promise<TokenExchangeResponse> {
  return exchange(options);
}

/** {@linkcode exchangeToken} with the hooks tests use to control time. */
export async function exchange(
  options: ExchangeTokenOptions & HttpInternals & Pick<ProcessInternals, "refusal">,
): Promise<TokenExchangeResponse> {
  const request = buildRequest(options);
  checkHttpOptions(options);
  const debug = options.onDebug;
  debug?.(`Token endpoint: ${request.url.href}`);
  debug?.(`Parameters: ${describeForm(request.body)}`);
  if (request.headers["authorization"] !== undefined) {
    debug?.(`Client authentication: HTTP Basic as "${options.clientId}" (secret ${MASK})`);
  }
  const secrets = [
    options.subjectToken,
    options.actorToken,
    options.clientSecret,
    // The Basic credentials, which a proxy's error page may echo from the request headers.
    request.headers["authorization"]?.replace(/^Basic /, ""),
  ].filter((secret): secret is string => secret !== undefined);
  const { response, attempts } = await sendWithRetries(
    request.url,
    { method: "POST", headers: request.headers, body: request.body.toString() },
    "Token endpoint",
    options,
  );
  return processResponse(response, {
    secrets,
    onDebug: debug,
    attempts,
    otherGrant: (options.grantType ?? "token-exchange") !== "token-exchange",
    refusal: options.refusal,
  });
}
