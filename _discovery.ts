import { DiscoveryError } from "./_errors.ts";
import {
  checkHttpOptions,
  type HttpInternals,
  type HttpOptions,
  isRedirect,
  sendWithRetries,
} from "./_http.ts";
import { decodeJson } from "./_json.ts";
import { summarise } from "./_redact.ts";
import { parseIssuerUrl, parseSecureUrl, parseUrl } from "./_url.ts";
import { USER_AGENT } from "./_constants.ts";

/**
 * Options for {@linkcode discoverTokenEndpoint}: how the metadata requests are sent.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8414#section-3}
 *
 * @example Discovery with a tight timeout, logging each step
 * ```ts
 * import type { DiscoverTokenEndpointOptions } from "@equinixmetal/token-exchange";
 *
 * const options: DiscoverTokenEndpointOptions = {
 *   timeout: 3_000,
 *   retries: 1,
 *   onDebug: (line) => console.error(line),
 * };
 * ```
 */
export interface DiscoverTokenEndpointOptions extends HttpOptions {}

/** How many redirects a metadata request may follow. */
const MAX_REDIRECTS = 5;

/** The metadata URLs to try for an issuer, in order. */
export function metadataUrls(issuer: URL): URL[] {
  const path = issuer.pathname.replace(/\/+$/, "");
  return [
    // OpenID Connect Discovery 1.0 §4: the well-known path is appended to the issuer.
    new URL(`${issuer.origin}${path}/.well-known/openid-configuration`),
    // RFC 8414 §3.1: the well-known path goes between the host and the issuer's path.
    new URL(`${issuer.origin}/.well-known/oauth-authorization-server${path}`),
  ];
}

type Fetched = { ok: true; metadata: Record<string, unknown> } | { ok: false; reason: string };

/** GETs one metadata document, following https redirects. */
async function fetchMetadata(start: URL, options: HttpOptions & HttpInternals): Promise<Fetched> {
  let url = start;
  for (let hop = 0;; hop++) {
    const { response } = await sendWithRetries(
      url,
      { method: "GET", headers: { accept: "application/json", "user-agent": USER_AGENT } },
      "Issuer",
      options,
    );
    const location = response.headers.get("location");
    if (isRedirect(response) && location !== null) {
      if (hop === MAX_REDIRECTS) {
        return { ok: false, reason: `more than ${MAX_REDIRECTS} redirects` };
      }
      const next = parseUrl(location, url);
      if (next === null) {
        return { ok: false, reason: `a redirect to an invalid URL "${summarise(location)}"` };
      }
      try {
        url = parseSecureUrl(next, "Redirect");
      } catch (error) {
        return { ok: false, reason: (error as TypeError).message };
      }
      options.onDebug?.(`Following a redirect to ${summarise(`${url.origin}${url.pathname}`)}`);
      continue;
    }
    if (response.status !== 200) return { ok: false, reason: `HTTP ${response.status}` };
    const decoded = decodeJson(response.body);
    if (decoded.kind === "object") return { ok: true, metadata: decoded.object };
    return {
      ok: false,
      reason: decoded.kind === "other"
        ? "HTTP 200 with JSON that is not an object"
        : "HTTP 200 with a body that is not JSON",
    };
  }
}

/**
 * Finds an issuer's token endpoint from its metadata: OpenID Connect Discovery
 * (`<issuer>/.well-known/openid-configuration`), then RFC 8414 authorization server metadata
 * (`/.well-known/oauth-authorization-server<issuer path>`).
 *
 * The metadata requests may follow redirects, but only to https (or loopback http) URLs. The
 * metadata must carry an `issuer` equal to the issuer asked for, and its `token_endpoint` must be
 * on the issuer's host (the same host and port) and must not downgrade an https issuer to http:
 * a document that says otherwise, whoever served it, does not get the token sent elsewhere.
 *
 * @see {@link https://openid.net/specs/openid-connect-discovery-1_0.html#ProviderConfig}
 * @see {@link https://www.rfc-editor.org/rfc/rfc8414#section-3}
 *
 * @param issuer The issuer URL, such as `https://dex.example.com`.
 * @param options How the metadata requests are sent.
 * @returns The token endpoint.
 * @throws {TypeError} If the issuer is not an https (or loopback http) URL.
 * @throws {DiscoveryError} If no metadata names a usable token endpoint, the metadata names another
 * issuer, or its token endpoint is on another host or plain http under an https issuer.
 * @throws {TokenExchangeError} If the issuer cannot be reached (`code` says why).
 *
 * @example Discovering Dex's token endpoint
 * ```ts ignore
 * import { discoverTokenEndpoint } from "@equinixmetal/token-exchange";
 *
 * const tokenEndpoint = await discoverTokenEndpoint("https://dex.example.com");
 * console.log(tokenEndpoint.href); // https://dex.example.com/token
 * ```
 *
 * @example Reading metadata served by an injected `fetch`
 * ```ts
 * import { discoverTokenEndpoint } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const fakeFetch: typeof fetch = async (url) => {
 *   assert.equal(String(url), "https://dex.example.com/.well-known/openid-configuration");
 *   return Response.json({
 *     issuer: "https://dex.example.com",
 *     token_endpoint: "https://dex.example.com/token",
 *   });
 * };
 * const tokenEndpoint = await discoverTokenEndpoint("https://dex.example.com", {
 *   fetch: fakeFetch,
 * });
 * assert.equal(tokenEndpoint.href, "https://dex.example.com/token");
 * ```
 */
export function discoverTokenEndpoint(
  issuer: string | URL,
  options: DiscoverTokenEndpointOptions = {},
): Promise<URL> {
  return discover(issuer, options);
}

/**
 * How the caller names its options in the advice of a {@linkcode DiscoveryError} ("set
 * token-endpoint instead of issuer"): the plugin's option names by default, the CLI's flags when
 * they were given. Not part of the public API.
 */
export interface DiscoveryInternals {
  /** The names of the token endpoint and issuer options. */
  names?: { tokenEndpoint: string; issuer: string };
  /**
   * Receives the metadata's `revocation_endpoint` (RFC 8414 §2) when it names one on the issuer's
   * host, with the same scheme rule as the token endpoint; never one elsewhere.
   */
  onRevocationEndpoint?: (url: URL) => void;
}

const PLUGIN_NAMES = { tokenEndpoint: "token-endpoint", issuer: "issuer" };

/** {@linkcode discoverTokenEndpoint} with the hooks tests use to control time and names. */
export async function discover(
  issuer: string | URL,
  options: DiscoverTokenEndpointOptions & HttpInternals & DiscoveryInternals,
): Promise<URL> {
  const issuerUrl = parseIssuerUrl(issuer, "Issuer");
  checkHttpOptions(options);
  const names = options.names ?? PLUGIN_NAMES;
  const expected = issuerUrl.href.replace(/\/+$/, "");
  const failures: string[] = [];
  for (const url of metadataUrls(issuerUrl)) {
    options.onDebug?.(`Discovery: reading ${url.href}`);
    const result = await fetchMetadata(url, options);
    if (!result.ok) {
      failures.push(`${url.href}: ${result.reason}`);
      continue;
    }
    const tokenEndpoint = checkMetadata(result.metadata, url, issuerUrl, names);
    const grants = result.metadata.grant_types_supported;
    if (
      Array.isArray(grants) && !grants.includes("urn:ietf:params:oauth:grant-type:token-exchange")
    ) {
      options.onDebug?.(
        "Discovery: the metadata's grant_types_supported does not list token exchange; trying anyway",
      );
    }
    options.onDebug?.(`Discovery: token endpoint is ${summarise(tokenEndpoint.href)}`);
    const revocation = result.metadata.revocation_endpoint;
    if (options.onRevocationEndpoint !== undefined && typeof revocation === "string") {
      try {
        const url = parseSecureUrl(revocation, "Discovered revocation endpoint");
        const sameScheme = issuerUrl.protocol !== "https:" || url.protocol === "https:";
        if (url.host === issuerUrl.host && sameScheme) options.onRevocationEndpoint(url);
      } catch {
        // Not one to send a token to: as if the metadata named none.
      }
    }
    return tokenEndpoint;
  }
  throw new DiscoveryError(
    `Cannot discover the token endpoint of issuer "${expected}" (${
      failures.join("; ")
    }): check the issuer URL or set ${names.tokenEndpoint} instead`,
  );
}

/**
 * The token endpoint that issuer metadata names, once the metadata is checked: its `issuer` is the
 * issuer asked for, and its `token_endpoint` is on the issuer's host without a downgrade to http.
 */
function checkMetadata(
  metadata: Record<string, unknown>,
  url: URL,
  issuerUrl: URL,
  names: { tokenEndpoint: string; issuer: string },
): URL {
  const instead = `set ${names.tokenEndpoint} instead of ${names.issuer}`;
  const expected = issuerUrl.href.replace(/\/+$/, "");
  if (typeof metadata.issuer !== "string") {
    throw new DiscoveryError(
      `Issuer metadata at ${url.href} has no "issuer" (RFC 8414 §3.3 requires it to match): ${instead}`,
    );
  }
  if (metadata.issuer.replace(/\/+$/, "") !== expected) {
    throw new DiscoveryError(
      `Issuer metadata at ${url.href} names issuer "${
        summarise(metadata.issuer)
      }", not "${expected}": set the issuer to exactly what its tokens say, or set ${names.tokenEndpoint} instead`,
    );
  }
  if (typeof metadata.token_endpoint !== "string") {
    throw new DiscoveryError(`Issuer metadata at ${url.href} has no "token_endpoint": ${instead}`);
  }
  let tokenEndpoint: URL;
  try {
    tokenEndpoint = parseSecureUrl(metadata.token_endpoint, "Discovered token endpoint");
  } catch (error) {
    throw new DiscoveryError(`${(error as TypeError).message}; ${instead}`);
  }
  // The same rule the plugin's Deno permissions hold a run to (network access to the issuer's
  // host only), in code, so that the library and the compiled CLI keep to it as well.
  if (tokenEndpoint.host !== issuerUrl.host) {
    throw new DiscoveryError(
      `The discovered token endpoint "${
        summarise(tokenEndpoint.href)
      }" is not on the issuer's host "${issuerUrl.host}", and this run may reach only that: set ${names.tokenEndpoint} to it instead of ${names.issuer}`,
    );
  }
  if (issuerUrl.protocol === "https:" && tokenEndpoint.protocol !== "https:") {
    throw new DiscoveryError(
      `The discovered token endpoint "${
        summarise(tokenEndpoint.href)
      }" is plain http under an https issuer: set ${names.tokenEndpoint} to an https URL instead of ${names.issuer}`,
    );
  }
  return tokenEndpoint;
}
