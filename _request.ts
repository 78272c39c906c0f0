import {
  CLIENT_ASSERTION_TYPE_JWT_BEARER,
  GRANT_TYPE_JWT_BEARER,
  GRANT_TYPE_TOKEN_EXCHANGE,
  TOKEN_TYPES,
  USER_AGENT,
} from "./_constants.ts";
import { isAbsoluteUriWithoutFragment, parseSecureUrl } from "./_url.ts";

/**
 * How the client authenticates to the token endpoint: `basic` is `client_secret_basic` (HTTP
 * Basic, RFC 6749 §2.3.1), `post` is `client_secret_post` (in the form body), and `assertion` sends
 * the subject token itself as a JWT client assertion (RFC 7523 §2.2: `client_assertion_type`,
 * `client_assertion` and `client_id`), as Microsoft Entra workload identity federation and
 * Keycloak's federated client authentication take a CI job's OIDC token.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1}
 * @see {@link https://www.rfc-editor.org/rfc/rfc7523#section-2.2}
 *
 * @example Sending the client secret in the body
 * ```ts
 * import { buildTokenExchangeRequest, type ClientAuthMethod } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const clientAuth: ClientAuthMethod = "post";
 * const { headers, body } = buildTokenExchangeRequest({
 *   tokenEndpoint: "https://sts.example.com/token",
 *   subjectToken: "an-opaque-token",
 *   clientId: "ci",
 *   clientSecret: "s3cret",
 *   clientAuth,
 * });
 * assert.equal(headers.get("authorization"), null);
 * assert.deepEqual([body.get("client_id"), body.get("client_secret")], ["ci", "s3cret"]);
 * ```
 */
export type ClientAuthMethod = "basic" | "post" | "assertion";

/**
 * The grant a request makes: `token-exchange` (RFC 8693, the default), `jwt-bearer` (RFC 7523
 * §2.1: the subject token is the `assertion`, with `scope`, and none of RFC 8693's parameters), or
 * `client-credentials` (RFC 6749 §4.4: the client's own token, with `scope`; the client
 * authenticates with a secret or, with `clientAuth: "assertion"`, with the subject token).
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7523#section-2.1}
 *
 * @example The OIDC token as a JWT authorization grant
 * ```ts
 * import { buildTokenExchangeRequest, type GrantType } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const grantType: GrantType = "jwt-bearer";
 * const { body } = buildTokenExchangeRequest({
 *   tokenEndpoint: "https://idp.example.com/token",
 *   subjectToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
 *   grantType,
 *   scope: "deploy",
 * });
 * assert.deepEqual([...body.keys()], ["grant_type", "assertion", "scope"]);
 * assert.equal(body.get("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");
 * ```
 */
export type GrantType = "token-exchange" | "jwt-bearer" | "client-credentials";

const GRANT_TYPES: readonly GrantType[] = ["token-exchange", "jwt-bearer", "client-credentials"];

/**
 * The parameters of a token exchange request (RFC 8693 §2.1) and the client's credentials. Each
 * optional parameter is sent only when it is set.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @example Repeated audiences and a list of scopes
 * ```ts
 * import {
 *   buildTokenExchangeRequest,
 *   type TokenExchangeParameters,
 * } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const parameters: TokenExchangeParameters = {
 *   tokenEndpoint: "https://sts.example.com/token",
 *   subjectToken: "an-opaque-token",
 *   audience: ["api-a", "api-b"],
 *   scope: ["read", "write"],
 * };
 * const { body } = buildTokenExchangeRequest(parameters);
 * assert.deepEqual(body.getAll("audience"), ["api-a", "api-b"]);
 * assert.equal(body.get("scope"), "read write");
 * assert.equal(body.has("resource"), false);
 * ```
 */
export interface TokenExchangeParameters {
  /** The token endpoint: https, or http to a loopback address. */
  tokenEndpoint: string | URL;
  /**
   * The token that represents the identity of the party on whose behalf the request is made: the
   * `subject_token`, or with `grantType: "jwt-bearer"` the `assertion`, and with
   * `clientAuth: "assertion"` the `client_assertion` too.
   */
  subjectToken: string;
  /**
   * The grant: RFC 8693 token exchange, or RFC 7523's JWT bearer grant, or client credentials.
   *
   * @default {"token-exchange"}
   */
  grantType?: GrantType;
  /**
   * The type of `subjectToken`.
   *
   * @default {"urn:ietf:params:oauth:token-type:jwt"}
   */
  subjectTokenType?: string;
  /** A token that represents the identity of the acting party (delegation). */
  actorToken?: string;
  /** The type of `actorToken`; required with it. */
  actorTokenType?: string;
  /** Where the issued token is meant to be used, by logical name (`audience`, repeatable). */
  audience?: string | readonly string[];
  /** Where the issued token is meant to be used, by absolute URI (`resource`, repeatable). */
  resource?: string | readonly string[];
  /** The scopes of the issued token, sent space-separated. */
  scope?: string | readonly string[];
  /** The type of token wanted, such as `urn:ietf:params:oauth:token-type:access_token`. */
  requestedTokenType?: string;
  /**
   * Form parameters a server needs beyond RFC 8693, such as Dex's `connector_id` or Keycloak's
   * `subject_issuer`, sent after the standard ones. Not for secrets: debug output shows them. The
   * parameters this client sends itself cannot be set here.
   */
  extraParameters?: Readonly<Record<string, string | readonly string[]>>;
  /** The client identifier. Without `clientSecret` it is sent as `client_id` (a public client). */
  clientId?: string;
  /** The client secret; requires `clientId`. */
  clientSecret?: string;
  /**
   * How the client authenticates: `clientSecret` as `basic` (HTTP Basic, each part form-encoded
   * per RFC 6749 §2.3.1) or `post` (`client_id` and `client_secret` in the body), or `assertion`
   * (the subject token as a JWT client assertion, RFC 7523 §2.2; requires `clientId`, no secret).
   *
   * @default {"basic"}
   */
  clientAuth?: ClientAuthMethod;
}

/**
 * A token exchange request, ready for `fetch`: send it with `POST` and `redirect: "manual"`, then
 * hand the response to {@linkcode processTokenExchangeResponse}.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @example Sending the request with your own HTTP client
 * ```ts ignore
 * import {
 *   buildTokenExchangeRequest,
 *   processTokenExchangeResponse,
 *   type TokenExchangeRequest,
 * } from "@equinixmetal/token-exchange";
 *
 * const request: TokenExchangeRequest = buildTokenExchangeRequest({
 *   tokenEndpoint: "https://sts.example.com/token",
 *   subjectToken: Deno.env.get("OIDC_TOKEN")!,
 * });
 * const response = await fetch(request.url, {
 *   method: "POST",
 *   headers: request.headers,
 *   body: request.body,
 *   redirect: "manual",
 * });
 * const { accessToken } = await processTokenExchangeResponse(response);
 * ```
 */
export interface TokenExchangeRequest {
  /** The token endpoint. */
  url: URL;
  /** `Content-Type`, `Accept`, `User-Agent` and, for `basic` client authentication, `Authorization`. */
  headers: Headers;
  /** The `application/x-www-form-urlencoded` body. */
  body: URLSearchParams;
}

/** The form parameters this client sets itself, which extra parameters may not replace. */
const RESERVED_PARAMETERS = new Set([
  "grant_type",
  "assertion",
  "client_assertion",
  "client_assertion_type",
  "subject_token",
  "subject_token_type",
  "actor_token",
  "actor_token_type",
  "audience",
  "resource",
  "scope",
  "requested_token_type",
  "client_id",
  "client_secret",
]);

function list(value: string | readonly string[] | undefined): readonly string[] {
  return value === undefined ? [] : typeof value === "string" ? [value] : value;
}

/** The parameters that {@linkcode checkParameters} checks: all but the endpoint and subject token. */
export type ExchangeParameters = Omit<TokenExchangeParameters, "tokenEndpoint" | "subjectToken">;

/**
 * How a caller names the parameters in messages, such as `--target-audience` for `audience`: the
 * field names of {@linkcode TokenExchangeParameters} by default.
 */
export type ParameterLabel = (name: keyof TokenExchangeParameters) => string;

const FIELD_NAMES: ParameterLabel = (name) => name;

function requireText(value: unknown, name: string): void {
  if (typeof value !== "string" || value.trim() === "") {
    throw new TypeError(`Cannot use ${name} "${value}": it must be a non-empty string`);
  }
}

/**
 * Checks every parameter of a token exchange but the endpoint and the subject token: what
 * {@linkcode buildTokenExchangeRequest} refuses, the CLI refuses too, before any token is asked
 * for, and with the same words.
 *
 * @param parameters The optional RFC 8693 parameters and the client.
 * @param label How the caller names each parameter in a message.
 * @throws {TypeError} If a parameter is missing or malformed.
 */
export function checkParameters(
  parameters: ExchangeParameters,
  label: ParameterLabel = FIELD_NAMES,
): void {
  const grantType = parameters.grantType ?? "token-exchange";
  if (!GRANT_TYPES.includes(grantType)) {
    throw new TypeError(
      `Cannot use ${label("grantType")} "${grantType}": it must be "${GRANT_TYPES.join('", "')}"`,
    );
  }
  if (grantType !== "token-exchange") {
    for (const name of ["audience", "requestedTokenType", "actorToken"] as const) {
      if (list(parameters[name]).length > 0) {
        throw new TypeError(
          `Cannot use ${label(name)} with ${
            label("grantType")
          } "${grantType}": it is a parameter of RFC 8693 token exchange; drop it, or send it with ${
            label("extraParameters")
          }`,
        );
      }
    }
  }
  requireText(parameters.subjectTokenType ?? TOKEN_TYPES.jwt, label("subjectTokenType"));
  if (parameters.actorToken !== undefined) {
    requireText(parameters.actorToken, label("actorToken"));
    requireText(parameters.actorTokenType, label("actorTokenType"));
  } else if (parameters.actorTokenType !== undefined) {
    throw new TypeError(
      `Cannot use ${label("actorTokenType")} without ${label("actorToken")}: set both or neither`,
    );
  }
  for (const audience of list(parameters.audience)) requireText(audience, label("audience"));
  for (const resource of list(parameters.resource)) {
    if (!isAbsoluteUriWithoutFragment(resource)) {
      throw new TypeError(
        `Cannot use ${
          label("resource")
        } "${resource}": it must be an absolute URI without a fragment (RFC 8693 §2.1), such as "https://api.example.com"`,
      );
    }
  }
  if (parameters.requestedTokenType !== undefined) {
    requireText(parameters.requestedTokenType, label("requestedTokenType"));
  }
  for (const name of Object.keys(parameters.extraParameters ?? {})) {
    if (name === "" || RESERVED_PARAMETERS.has(name)) {
      throw new TypeError(
        `Cannot send "${name}" as an extra parameter (${label("extraParameters")}): ${
          name === "" ? "it needs a name" : "this client sets it from its own option"
        }`,
      );
    }
  }
  checkClient(parameters, label);
}

function checkClient(parameters: ExchangeParameters, label: ParameterLabel): void {
  const { clientId, clientSecret, clientAuth = "basic" } = parameters;
  if (clientAuth !== "basic" && clientAuth !== "post" && clientAuth !== "assertion") {
    throw new TypeError(
      `Cannot use ${
        label("clientAuth")
      } "${clientAuth}": it must be "basic", "post" or "assertion"`,
    );
  }
  if (clientId !== undefined) requireText(clientId, label("clientId"));
  if (clientAuth === "assertion") {
    if (clientId === undefined) {
      throw new TypeError(
        `Cannot use ${label("clientAuth")} "assertion" without ${
          label("clientId")
        }: the assertion is sent with the client ID it authenticates`,
      );
    }
    if (clientSecret !== undefined) {
      throw new TypeError(
        `Cannot use ${label("clientSecret")} with ${
          label("clientAuth")
        } "assertion": the subject token is the client's credential; drop the secret`,
      );
    }
  }
  if (
    parameters.grantType === "client-credentials" && clientSecret === undefined &&
    clientAuth !== "assertion"
  ) {
    throw new TypeError(
      `Cannot use ${label("grantType")} "client-credentials" without client authentication: set ${
        label("clientSecret")
      }, or ${label("clientAuth")} "assertion"`,
    );
  }
  if (clientSecret !== undefined) {
    if (clientId === undefined) {
      throw new TypeError(
        `Cannot use ${label("clientSecret")} without ${
          label("clientId")
        }: set the client ID as well`,
      );
    }
    if (clientSecret === "") throw new TypeError(`Cannot use an empty ${label("clientSecret")}`);
  }
}

/** Encodes one value with the application/x-www-form-urlencoded serializer (RFC 6749 §2.3.1). */
export function formEncode(value: string): string {
  return new URLSearchParams([["", value]]).toString().slice(1);
}

/**
 * Builds a token exchange request: the form body with each optional parameter only when it is set,
 * and the headers, with client authentication applied.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 * @see {@link https://www.rfc-editor.org/rfc/rfc6749#section-2.3.1}
 *
 * @param parameters The endpoint, the tokens, the optional RFC 8693 parameters and the client.
 * @returns The URL, headers and body to send with `POST`.
 * @throws {TypeError} If a parameter is missing or malformed, or the endpoint is neither https
 * nor loopback http.
 *
 * @example Building a request for Google's STS
 * ```ts
 * import { buildTokenExchangeRequest } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const request = buildTokenExchangeRequest({
 *   tokenEndpoint: "https://sts.googleapis.com/v1/token",
 *   subjectToken: "eyJhbGciOiJSUzI1NiJ9.e30.c2ln",
 *   audience: "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/p/providers/q",
 *   scope: "https://www.googleapis.com/auth/cloud-platform",
 * });
 * assert.equal(request.body.get("grant_type"), "urn:ietf:params:oauth:grant-type:token-exchange");
 * assert.equal(request.headers.get("content-type"), "application/x-www-form-urlencoded");
 * ```
 */
export function buildTokenExchangeRequest(
  parameters: TokenExchangeParameters,
): TokenExchangeRequest {
  const { url, headers, body } = buildRequest(parameters);
  return { url, headers: new Headers(headers), body };
}

/** A checked request with its headers as a plain object, which is cheaper at start-up than `Headers`. */
export interface RequestParts {
  url: URL;
  headers: Record<string, string>;
  body: URLSearchParams;
}

/** {@linkcode buildTokenExchangeRequest}, with the headers as a plain object. */
export function buildRequest(parameters: TokenExchangeParameters): RequestParts {
  const url = parseSecureUrl(parameters.tokenEndpoint, "Token endpoint");
  requireText(parameters.subjectToken, "subjectToken");
  checkParameters(parameters);

  const grantType = parameters.grantType ?? "token-exchange";
  const body = new URLSearchParams();
  if (grantType === "token-exchange") {
    body.append("grant_type", GRANT_TYPE_TOKEN_EXCHANGE);
    body.append("subject_token", parameters.subjectToken);
    body.append("subject_token_type", parameters.subjectTokenType ?? TOKEN_TYPES.jwt);
    if (parameters.actorToken !== undefined) {
      body.append("actor_token", parameters.actorToken);
      body.append("actor_token_type", parameters.actorTokenType!);
    }
    for (const audience of list(parameters.audience)) body.append("audience", audience);
  } else if (grantType === "jwt-bearer") {
    body.append("grant_type", GRANT_TYPE_JWT_BEARER);
    body.append("assertion", parameters.subjectToken);
  } else {
    body.append("grant_type", "client_credentials");
  }
  for (const resource of list(parameters.resource)) body.append("resource", resource);
  const scopes = list(parameters.scope).flatMap((scope) => scope.split(/\s+/)).filter((s) => s);
  if (scopes.length > 0) body.append("scope", scopes.join(" "));
  if (parameters.requestedTokenType !== undefined) {
    body.append("requested_token_type", parameters.requestedTokenType);
  }
  for (const [name, values] of Object.entries(parameters.extraParameters ?? {})) {
    for (const value of list(values)) body.append(name, value);
  }

  const headers: Record<string, string> = {
    "content-type": "application/x-www-form-urlencoded",
    accept: "application/json",
    "user-agent": USER_AGENT,
  };
  const { clientId, clientSecret, clientAuth = "basic" } = parameters;
  if (clientSecret !== undefined && clientAuth === "basic") {
    headers["authorization"] = `Basic ${
      btoa(`${formEncode(clientId!)}:${formEncode(clientSecret)}`)
    }`;
  } else if (clientSecret !== undefined) {
    body.append("client_id", clientId!);
    body.append("client_secret", clientSecret);
  } else if (clientAuth === "assertion") {
    body.append("client_assertion_type", CLIENT_ASSERTION_TYPE_JWT_BEARER);
    body.append("client_assertion", parameters.subjectToken);
    body.append("client_id", clientId!);
  } else if (clientId !== undefined) {
    body.append("client_id", clientId);
  }
  return { url, headers, body };
}
