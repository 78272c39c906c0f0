/**
 * OAuth 2.0 Token Exchange (RFC 8693) for CI jobs: trade a short-lived OIDC identity token for a
 * federated access token at any compliant token endpoint (Google STS, Dex, Keycloak, Okta, or an
 * in-house STS), instead of storing long-lived secrets.
 *
 * The library uses only web-standard APIs (`fetch`, `URLSearchParams`, `Headers`, `AbortSignal`),
 * so it runs in Deno, Node.js, Bun, browsers and edge runtimes.
 *
 * - {@linkcode exchangeToken} sends the exchange, with timeouts, retries and no redirects.
 * - {@linkcode discoverTokenEndpoint} finds a token endpoint from an issuer's metadata.
 * - {@linkcode buildTokenExchangeRequest} and {@linkcode processTokenExchangeResponse} are the two
 *   halves of an exchange, for callers that send the request themselves.
 * - {@linkcode decodeJwt} shows what a token claims, without verifying it.
 * - Beyond RFC 8693: `grantType` (RFC 7523's JWT bearer grant, client credentials) and
 *   `clientAuth: "assertion"` (RFC 7523 client assertions) in {@linkcode exchangeToken};
 *   {@linkcode vaultLogin} (HashiCorp Vault, OpenBao), {@linkcode octoStsExchange} (GitHub tokens),
 *   and {@linkcode revokeToken} (RFC 7009), {@linkcode revokeVaultToken} and
 *   {@linkcode revokeGitHubToken} for the end of a job.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693}
 *
 * @example Exchanging a Buildkite OIDC token
 * ```ts ignore
 * import { exchangeToken } from "@equinixmetal/token-exchange";
 *
 * const { accessToken } = await exchangeToken({
 *   tokenEndpoint: "https://sts.example.com/oauth2/token",
 *   subjectToken: buildkiteOidcToken,
 *   audience: "https://api.example.com",
 * });
 * ```
 *
 * @module
 */

export { GRANT_TYPE_TOKEN_EXCHANGE, TOKEN_TYPES, VERSION } from "./_constants.ts";
export { discoverTokenEndpoint, type DiscoverTokenEndpointOptions } from "./_discovery.ts";
export {
  DiscoveryError,
  HttpStatusError,
  InvalidResponseError,
  NetworkError,
  OAuthError,
  type OAuthErrorFields,
  RedirectError,
  ResponseTooLargeError,
  TimeoutError,
  TokenExchangeError,
  type TokenExchangeErrorCode,
  type TokenExchangeErrorOptions,
} from "./_errors.ts";
export { exchangeToken, type ExchangeTokenOptions } from "./_exchange.ts";
export type { HttpOptions } from "./_http.ts";
export { type DecodedJwt, decodeJwt } from "./_jwt.ts";
export {
  octoStsExchange,
  type OctoStsOptions,
  revokeGitHubToken,
  type RevokeGitHubTokenOptions,
  revokeToken,
  type RevokeTokenOptions,
  revokeVaultToken,
  type RevokeVaultTokenOptions,
  vaultLogin,
  type VaultLoginOptions,
  type VaultToken,
} from "./_providers.ts";
export {
  buildTokenExchangeRequest,
  type ClientAuthMethod,
  type GrantType,
  type TokenExchangeParameters,
  type TokenExchangeRequest,
} from "./_request.ts";
export {
  type ProcessResponseOptions,
  processTokenExchangeResponse,
  type TokenExchangeResponse,
} from "./_response.ts";
