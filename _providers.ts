// The requests beyond RFC 8693 that a CI job's OIDC token is traded with, each small: HashiCorp
// Vault's (and OpenBao's) JWT login, a GitHub token through octo-sts, and revoking what was
// obtained when the job ends (RFC 7009, Vault's revoke-self, GitHub's installation token). Each
// sends one request with the same timeouts, retries and no redirects as the exchange, and says
// what the server refused in its own words, with every token masked. Web-standard APIs only.

import { USER_AGENT } from "./_constants.ts";
import { HttpStatusError, InvalidResponseError, OAuthError } from "./_errors.ts";
import {
  checkHttpOptions,
  type HttpInternals,
  type HttpOptions,
  type ReadResponse,
  sendWithRetries,
} from "./_http.ts";
import { decodeJson, isJsonObject } from "./_json.ts";
import { summarise } from "./_redact.ts";
import { type ClientAuthMethod, formEncode } from "./_request.ts";
import { issuedTokenProblem } from "./_response.ts";
import { parseSecureUrl } from "./_url.ts";

/**
 * Options for {@linkcode vaultLogin}: where Vault is, the JWT auth method's role, and the OIDC
 * token.
 *
 * @see {@link https://developer.hashicorp.com/vault/api-docs/auth/jwt#jwt-login}
 *
 * @example A role in a namespace, with the auth method mounted at `buildkite`
 * ```ts
 * import type { VaultLoginOptions } from "@equinixmetal/token-exchange";
 *
 * const options: VaultLoginOptions = {
 *   vaultAddr: "https://vault.example.com:8200",
 *   role: "deploy",
 *   jwt: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
 *   mount: "buildkite",
 *   namespace: "ci",
 * };
 * ```
 */
export interface VaultLoginOptions extends HttpOptions {
  /** Vault's address (`VAULT_ADDR`): https, or http to a loopback address. */
  vaultAddr: string | URL;
  /** The JWT auth method's role. */
  role: string;
  /** The OIDC token. */
  jwt: string;
  /** Where the JWT auth method is mounted. @default {"jwt"} */
  mount?: string;
  /** The Vault Enterprise (or OpenBao) namespace, sent as `X-Vault-Namespace`. */
  namespace?: string;
}

/**
 * What Vault's login gives: a token, and how long it lives.
 *
 * @see {@link https://developer.hashicorp.com/vault/api-docs/auth/jwt#jwt-login}
 *
 * @example When the token expires
 * ```ts
 * import type { VaultToken } from "@equinixmetal/token-exchange";
 *
 * const token: VaultToken = { clientToken: "hvs.CAESI-the-token", leaseDuration: 1200 };
 * const expiresAt = new Date(Date.now() + (token.leaseDuration ?? 0) * 1000);
 * ```
 */
export interface VaultToken {
  /** `auth.client_token`, the Vault token. */
  clientToken: string;
  /** `auth.lease_duration` in seconds, if Vault said (0 for a token that does not expire). */
  leaseDuration: number | undefined;
}

/** A Vault mount path: segments of letters, digits, `_`, `.` and `-`, none of them `.` or `..`. */
export const VAULT_MOUNT = /^[A-Za-z0-9][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9][A-Za-z0-9_.-]*)*$/;
/** A namespace path, as `X-Vault-Namespace` carries it. */
export const VAULT_NAMESPACE = /^[A-Za-z0-9][A-Za-z0-9_.-]*(?:\/[A-Za-z0-9][A-Za-z0-9_.-]*)*\/?$/;

/** Vault's URL for PATH (without a leading slash), checked to be safe to send a token to. */
function vaultUrl(vaultAddr: string | URL, path: string): URL {
  const base = parseSecureUrl(vaultAddr, "Vault address (vaultAddr)");
  return new URL(`${base.href.replace(/\/?$/, "/")}v1/${path}`);
}

function vaultHeaders(namespace: string | undefined): Record<string, string> {
  if (namespace !== undefined && !VAULT_NAMESPACE.test(namespace)) {
    throw new TypeError(
      `Cannot use namespace "${summarise(namespace, [], 100)}": use a path such as ci or team/ci`,
    );
  }
  return {
    "content-type": "application/json",
    "user-agent": USER_AGENT,
    ...(namespace !== undefined && { "x-vault-namespace": namespace }),
  };
}

/** Vault's `errors`, or failing that the body, masked, for a message. */
function vaultErrors(response: ReadResponse, secrets: readonly string[]): string {
  const decoded = decodeJson(response.body);
  const errors = decoded.kind === "object" ? decoded.object.errors : undefined;
  if (Array.isArray(errors) && errors.every((error) => typeof error === "string")) {
    return `"${summarise(errors.join("; "), secrets, 500)}"`;
  }
  const text = decoded.kind === "not-utf8" ? "(a body that is not UTF-8 text)" : decoded.text;
  return `"${summarise(text, secrets)}"`;
}

/**
 * Logs in to HashiCorp Vault (or OpenBao) with the JWT auth method:
 * `POST <vaultAddr>/v1/auth/<mount>/login` with `{"role", "jwt"}`.
 *
 * @see {@link https://developer.hashicorp.com/vault/api-docs/auth/jwt#jwt-login}
 *
 * @param options Vault's address, the role, the OIDC token, the mount and namespace, and how to
 *   send the request.
 * @returns The Vault token and its lease.
 * @throws {TypeError} If an option is malformed (before anything is sent).
 * @throws {HttpStatusError} When Vault refuses the login, with its `errors`.
 * @throws {TokenExchangeError} For every other failure; its `code` says which.
 *
 * @example Logging in with the job's OIDC token
 * ```ts ignore
 * import { vaultLogin } from "@equinixmetal/token-exchange";
 *
 * const { clientToken } = await vaultLogin({
 *   vaultAddr: "https://vault.example.com:8200",
 *   role: "deploy",
 *   jwt: oidcToken,
 * });
 * ```
 */
export function vaultLogin(options: VaultLoginOptions): Promise<VaultToken> {
  return loginToVault(options);
}

/** {@linkcode vaultLogin} with the hooks the engine uses. */
export async function loginToVault(
  options: VaultLoginOptions & HttpInternals,
): Promise<VaultToken> {
  const mount = options.mount ?? "jwt";
  if (!VAULT_MOUNT.test(mount)) {
    throw new TypeError(
      `Cannot use mount "${summarise(mount, [], 100)}": use the auth method's path, such as jwt`,
    );
  }
  if (typeof options.role !== "string" || options.role === "") {
    throw new TypeError("Cannot log in to Vault without a role");
  }
  checkHttpOptions(options);
  const url = vaultUrl(options.vaultAddr, `auth/${mount}/login`);
  options.onDebug?.(`Vault: login at ${url.href} as role ${JSON.stringify(options.role)}`);
  const { response, attempts } = await sendWithRetries(
    url,
    {
      method: "POST",
      headers: vaultHeaders(options.namespace),
      body: JSON.stringify({ role: options.role, jwt: options.jwt }),
    },
    "Vault",
    options,
  );
  const secrets = [options.jwt];
  const meta = { status: response.status, attempts };
  if (response.status !== 200) {
    throw new HttpStatusError(
      `Vault refused the login with role ${
        JSON.stringify(options.role)
      } at auth/${mount}: HTTP ${response.status}, ${vaultErrors(response, secrets)}`,
      response.status,
      response.headers.get("content-type") ?? undefined,
      summarise(new TextDecoder().decode(response.body), secrets),
      meta,
    );
  }
  const decoded = decodeJson(response.body);
  const auth = decoded.kind === "object" ? decoded.object.auth : undefined;
  const clientToken = isJsonObject(auth) ? auth.client_token : undefined;
  const why = typeof clientToken === "string" ? issuedTokenProblem(clientToken) : undefined;
  const problem = typeof clientToken !== "string"
    ? "without auth.client_token"
    : why && `with an auth.client_token that ${why}`;
  if (problem) throw new InvalidResponseError(`Vault answered HTTP 200 ${problem}`, meta);
  const lease = (auth as Record<string, unknown>).lease_duration;
  return {
    clientToken: clientToken as string,
    leaseDuration: typeof lease === "number" && Number.isFinite(lease) && lease >= 0
      ? lease
      : undefined,
  };
}

/**
 * Options for {@linkcode octoStsExchange}: the octo-sts instance, the trust policy, and the OIDC
 * token.
 *
 * @see {@link https://github.com/octo-sts/app}
 *
 * @example A token for one repository
 * ```ts
 * import type { OctoStsOptions } from "@equinixmetal/token-exchange";
 *
 * const options: OctoStsOptions = {
 *   scope: "acme/deploy",
 *   identity: "buildkite-release",
 *   oidcToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
 * };
 * ```
 */
export interface OctoStsOptions extends HttpOptions {
  /** The octo-sts instance. @default {"https://octo-sts.dev"} */
  octoStsUrl?: string | URL;
  /** `org/repo`, or `org` for an organization-wide token. */
  scope: string;
  /** The trust policy's name (`.github/chainguard/<identity>.sts.yaml`). */
  identity: string;
  /** The OIDC token, sent as a bearer token. */
  oidcToken: string;
}

/** The default octo-sts instance. */
export const OCTO_STS_URL = "https://octo-sts.dev";
/** The default GitHub API. */
export const GITHUB_API_URL = "https://api.github.com";

/** octo-sts's `scope`: `org/repo`, or `org`. */
export const GITHUB_SCOPE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})(?:\/[A-Za-z0-9._-]{1,100})?$/;
/** octo-sts's `identity`: a trust policy's name. */
export const OCTO_STS_IDENTITY = /^[A-Za-z0-9_.-]{1,100}$/;

/**
 * Trades the OIDC token for a GitHub token through octo-sts:
 * `GET <octoStsUrl>/sts/exchange?scope=…&identity=…` with the OIDC token as a bearer token.
 *
 * @see {@link https://github.com/octo-sts/app}
 *
 * @param options The instance, scope, identity and OIDC token, and how to send the request.
 * @returns The GitHub token.
 * @throws {TypeError} If an option is malformed (before anything is sent).
 * @throws {HttpStatusError} When octo-sts refuses, with its message.
 * @throws {TokenExchangeError} For every other failure; its `code` says which.
 *
 * @example A GitHub token for one repository
 * ```ts ignore
 * import { octoStsExchange } from "@equinixmetal/token-exchange";
 *
 * const { token } = await octoStsExchange({
 *   scope: "acme/deploy",
 *   identity: "buildkite-release",
 *   oidcToken,
 * });
 * ```
 */
export function octoStsExchange(options: OctoStsOptions): Promise<{ token: string }> {
  return exchangeAtOctoSts(options);
}

/** {@linkcode octoStsExchange} with the hooks the engine uses. */
export async function exchangeAtOctoSts(
  options: OctoStsOptions & HttpInternals,
): Promise<{ token: string }> {
  if (!GITHUB_SCOPE.test(options.scope)) {
    throw new TypeError(
      `Cannot use scope "${summarise(options.scope, [], 100)}": use org/repo, or org`,
    );
  }
  if (!OCTO_STS_IDENTITY.test(options.identity)) {
    throw new TypeError(
      `Cannot use identity "${
        summarise(options.identity, [], 100)
      }": use the trust policy's name, such as buildkite-release`,
    );
  }
  checkHttpOptions(options);
  const base = parseSecureUrl(options.octoStsUrl ?? OCTO_STS_URL, "octo-sts URL (octoStsUrl)");
  const url = new URL(`${base.href.replace(/\/?$/, "/")}sts/exchange`);
  url.searchParams.set("scope", options.scope);
  url.searchParams.set("identity", options.identity);
  options.onDebug?.(`octo-sts: ${url.origin}${url.pathname}${url.search}`);
  const { response, attempts } = await sendWithRetries(
    url,
    {
      method: "GET",
      headers: {
        authorization: `Bearer ${options.oidcToken}`,
        accept: "application/json",
        "user-agent": USER_AGENT,
      },
    },
    "octo-sts",
    options,
  );
  const secrets = [options.oidcToken];
  const meta = { status: response.status, attempts };
  const decoded = decodeJson(response.body);
  const object = decoded.kind === "object" ? decoded.object : undefined;
  if (response.status !== 200) {
    const message = typeof object?.message === "string"
      ? object.message
      : decoded.kind === "not-utf8"
      ? "(a body that is not UTF-8 text)"
      : decoded.text;
    throw new HttpStatusError(
      `octo-sts refused a token for ${options.scope} as ${options.identity}: HTTP ${response.status}, "${
        summarise(message, secrets, 500)
      }"`,
      response.status,
      response.headers.get("content-type") ?? undefined,
      summarise(decoded.kind === "not-utf8" ? "" : decoded.text, secrets),
      meta,
    );
  }
  const token = object?.token;
  const why = typeof token === "string" ? issuedTokenProblem(token) : undefined;
  const problem = typeof token !== "string" ? "without a token" : why && `with a token that ${why}`;
  if (problem) throw new InvalidResponseError(`octo-sts answered HTTP 200 ${problem}`, meta);
  return { token: token as string };
}

/**
 * Options for {@linkcode revokeToken}: the revocation endpoint, the token, and the client's
 * authentication.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7009#section-2.1}
 *
 * @example A confidential client's token
 * ```ts
 * import type { RevokeTokenOptions } from "@equinixmetal/token-exchange";
 *
 * const options: RevokeTokenOptions = {
 *   revocationEndpoint: "https://sts.example.com/revoke",
 *   token: "the-issued-access-token",
 *   clientId: "ci",
 *   clientSecret: "s3cret",
 * };
 * ```
 */
export interface RevokeTokenOptions extends HttpOptions {
  /** The revocation endpoint: https, or http to a loopback address. */
  revocationEndpoint: string | URL;
  /** The token to revoke. */
  token: string;
  /** `token_type_hint`. @default {"access_token"} */
  tokenTypeHint?: string;
  /** The client identifier, sent as `client_id` when there is no secret. */
  clientId?: string;
  /** The client secret; requires `clientId`. */
  clientSecret?: string;
  /** How `clientSecret` is sent, as for the exchange (`assertion` is not supported here). */
  clientAuth?: Exclude<ClientAuthMethod, "assertion">;
}

/**
 * Revokes a token (RFC 7009): `POST` of `token` and `token_type_hint`, with the client's
 * authentication. HTTP 200 is success, even for a token the server no longer knows.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7009}
 *
 * @param options The endpoint, the token, the client, and how to send the request.
 * @returns Once the server has answered HTTP 200.
 * @throws {TypeError} If an option is malformed (before anything is sent).
 * @throws {OAuthError} When the server refuses with an OAuth error response.
 * @throws {TokenExchangeError} For every other failure; its `code` says which.
 *
 * @example Revoking the issued token when the job ends
 * ```ts ignore
 * import { revokeToken } from "@equinixmetal/token-exchange";
 *
 * await revokeToken({ revocationEndpoint: "https://sts.example.com/revoke", token: accessToken });
 * ```
 */
export function revokeToken(options: RevokeTokenOptions): Promise<void> {
  return revokeAtEndpoint(options);
}

/** {@linkcode revokeToken} with the hooks the engine uses. */
export async function revokeAtEndpoint(
  options: RevokeTokenOptions & HttpInternals,
): Promise<void> {
  const url = parseSecureUrl(options.revocationEndpoint, "Revocation endpoint");
  const { clientId, clientSecret, clientAuth = "basic" } = options;
  if (clientSecret !== undefined && clientId === undefined) {
    throw new TypeError("Cannot use clientSecret without clientId: set the client ID as well");
  }
  checkHttpOptions(options);
  const body = new URLSearchParams({
    token: options.token,
    token_type_hint: options.tokenTypeHint ?? "access_token",
  });
  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    "user-agent": USER_AGENT,
  };
  if (clientSecret !== undefined && clientAuth === "basic") {
    headers.authorization = `Basic ${btoa(`${formEncode(clientId!)}:${formEncode(clientSecret)}`)}`;
  } else if (clientSecret !== undefined) {
    body.append("client_id", clientId!);
    body.append("client_secret", clientSecret);
  } else if (clientId !== undefined) {
    body.append("client_id", clientId);
  }
  options.onDebug?.(`Revocation endpoint: ${url.href}`);
  const { response, attempts } = await sendWithRetries(
    url,
    { method: "POST", headers, body: body.toString() },
    "Revocation endpoint",
    options,
  );
  if (response.status === 200) return;
  const secrets = [options.token, clientSecret, headers.authorization?.slice(6)].filter(
    (secret): secret is string => secret !== undefined,
  );
  const meta = { status: response.status, attempts };
  const decoded = decodeJson(response.body);
  if (decoded.kind === "object" && typeof decoded.object.error === "string") {
    const description = decoded.object.error_description;
    throw new OAuthError(
      `Revocation endpoint refused: HTTP ${response.status}, error "${
        summarise(decoded.object.error, secrets, 100)
      }"${typeof description === "string" ? `: "${summarise(description, secrets)}"` : ""}`,
      response.status,
      {
        error: decoded.object.error,
        errorDescription: typeof description === "string" ? description : undefined,
      },
      meta,
    );
  }
  throw statusFailure("Revocation endpoint", response, secrets, meta);
}

/** A status other than the one expected, with the body masked. */
function statusFailure(
  what: string,
  response: ReadResponse,
  secrets: readonly string[],
  meta: { status: number; attempts: number },
): HttpStatusError {
  const text = new TextDecoder().decode(response.body);
  const excerpt = summarise(text, secrets);
  return new HttpStatusError(
    `${what} answered HTTP ${response.status}${excerpt ? `: "${excerpt}"` : ""}`,
    response.status,
    response.headers.get("content-type") ?? undefined,
    excerpt,
    meta,
  );
}

/**
 * Revokes a Vault token: `POST <vaultAddr>/v1/auth/token/revoke-self` with `X-Vault-Token`.
 *
 * @see {@link https://developer.hashicorp.com/vault/api-docs/auth/token#revoke-a-token-self}
 *
 * @param options Vault's address, the token, the namespace, and how to send the request.
 * @returns Once Vault has revoked it.
 * @throws {HttpStatusError} When Vault refuses, with its `errors`.
 * @throws {TokenExchangeError} For every other failure.
 *
 * @example Revoking the job's Vault token
 * ```ts ignore
 * import { revokeVaultToken } from "@equinixmetal/token-exchange";
 *
 * await revokeVaultToken({ vaultAddr: "https://vault.example.com:8200", token: clientToken });
 * ```
 */
export function revokeVaultToken(options: RevokeVaultTokenOptions): Promise<void> {
  return revokeAtVault(options);
}

/**
 * Options for {@linkcode revokeVaultToken}.
 *
 * @see {@link https://developer.hashicorp.com/vault/api-docs/auth/token#revoke-a-token-self}
 *
 * @example The token of a login in a namespace
 * ```ts
 * import type { RevokeVaultTokenOptions } from "@equinixmetal/token-exchange";
 *
 * const options: RevokeVaultTokenOptions = {
 *   vaultAddr: "https://vault.example.com:8200",
 *   token: "hvs.the-token-vaultLogin-gave",
 *   namespace: "ci",
 * };
 * ```
 */
export interface RevokeVaultTokenOptions extends HttpOptions {
  /** Vault's address: https, or http to a loopback address. */
  vaultAddr: string | URL;
  /** The Vault token to revoke. */
  token: string;
  /** The namespace it was issued in, sent as `X-Vault-Namespace`. */
  namespace?: string;
}

/** {@linkcode revokeVaultToken} with the hooks the engine uses. */
export async function revokeAtVault(
  options: RevokeVaultTokenOptions & HttpInternals,
): Promise<void> {
  const url = vaultUrl(options.vaultAddr, "auth/token/revoke-self");
  checkHttpOptions(options);
  const { response, attempts } = await sendWithRetries(
    url,
    {
      method: "POST",
      headers: { ...vaultHeaders(options.namespace), "x-vault-token": options.token },
    },
    "Vault",
    options,
  );
  if (response.status === 204 || response.status === 200) return;
  throw new HttpStatusError(
    `Vault refused to revoke the token: HTTP ${response.status}, ${
      vaultErrors(response, [options.token])
    }`,
    response.status,
    response.headers.get("content-type") ?? undefined,
    summarise(new TextDecoder().decode(response.body), [options.token]),
    { status: response.status, attempts },
  );
}

/**
 * Revokes a GitHub installation token (such as octo-sts gives): `DELETE
 * <githubApiUrl>/installation/token` with the token as a bearer token.
 *
 * @see {@link https://docs.github.com/en/rest/apps/installations#revoke-an-installation-access-token}
 *
 * @param options The token, the GitHub API (for GitHub Enterprise Server), and how to send the
 *   request.
 * @returns Once GitHub has revoked it.
 * @throws {HttpStatusError} When GitHub refuses.
 * @throws {TokenExchangeError} For every other failure.
 *
 * @example Revoking the job's GitHub token
 * ```ts ignore
 * import { revokeGitHubToken } from "@equinixmetal/token-exchange";
 *
 * await revokeGitHubToken({ token });
 * ```
 */
export function revokeGitHubToken(options: RevokeGitHubTokenOptions): Promise<void> {
  return revokeAtGitHub(options);
}

/**
 * Options for {@linkcode revokeGitHubToken}.
 *
 * @see {@link https://docs.github.com/en/rest/apps/installations#revoke-an-installation-access-token}
 *
 * @example A token of GitHub Enterprise Server
 * ```ts
 * import type { RevokeGitHubTokenOptions } from "@equinixmetal/token-exchange";
 *
 * const options: RevokeGitHubTokenOptions = {
 *   token: "ghs_the-token-octo-sts-gave",
 *   githubApiUrl: "https://github.example.com/api/v3",
 * };
 * ```
 */
export interface RevokeGitHubTokenOptions extends HttpOptions {
  /** The installation token to revoke. */
  token: string;
  /** The GitHub API. @default {"https://api.github.com"} */
  githubApiUrl?: string | URL;
}

/** {@linkcode revokeGitHubToken} with the hooks the engine uses. */
export async function revokeAtGitHub(
  options: RevokeGitHubTokenOptions & HttpInternals,
): Promise<void> {
  const base = parseSecureUrl(options.githubApiUrl ?? GITHUB_API_URL, "GitHub API (githubApiUrl)");
  const url = new URL(`${base.href.replace(/\/?$/, "/")}installation/token`);
  checkHttpOptions(options);
  const { response, attempts } = await sendWithRetries(
    url,
    {
      method: "DELETE",
      headers: {
        authorization: `Bearer ${options.token}`,
        accept: "application/vnd.github+json",
        "x-github-api-version": "2022-11-28",
        "user-agent": USER_AGENT,
      },
    },
    "GitHub API",
    options,
  );
  if (response.status === 204) return;
  throw statusFailure("GitHub API", response, [options.token], {
    status: response.status,
    attempts,
  });
}
