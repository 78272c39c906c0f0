// The CLI's fetch: Deno's own, except that a loopback endpoint is never reached through a proxy
// from the environment. Unlike the library, this module uses Deno APIs.
//
// Deno's fetch sends a request through HTTP_PROXY, HTTPS_PROXY or ALL_PROXY (upper or lower case)
// unless NO_PROXY (or no_proxy) names its host, loopback addresses included; a client made with
// Deno.createHttpClient() reads the same variables when it is made. So:
//
// - plain http to loopback goes through a client whose transport is a TCP connection to the
//   endpoint's own address, which reads no proxy variable and needs no permission but the
//   endpoint's (that transport speaks no TLS, so it is not for https);
// - https to loopback goes through a client made while NO_PROXY also lists localhost,
//   127.0.0.0/8 and ::1 (the variable is put back at once). That needs --allow-env for NO_PROXY
//   and no_proxy; without it, the proxy Deno chooses is used, and the request stays inside TLS
//   to the endpoint's own certificate, so the proxy never sees the token;
// - other hosts keep Deno's behaviour: HTTPS_PROXY, HTTP_PROXY, ALL_PROXY and NO_PROXY.

import { isLoopbackHostname } from "./_url.ts";

/** A `fetch` that reaches loopback endpoints directly, and the clients it made. */
export interface DirectFetch extends Disposable {
  /** Deno's `fetch`, with a proxy-free client for a loopback URL. */
  fetch: typeof fetch;
  /** Makes the client for URL's host now rather than at its first request. */
  prepare(url: URL): void;
}

/** What NO_PROXY gains for a loopback https client: every loopback name and address. */
export const LOOPBACK_NO_PROXY = "localhost,127.0.0.0/8,::1";

/** A client made while NO_PROXY lists loopback, or `undefined` if the environment is closed. */
function noProxyClient(caCerts: string[] | undefined): Deno.HttpClient | undefined {
  let before: string | undefined;
  let base: string | undefined;
  try {
    before = Deno.env.get("NO_PROXY");
    // Deno reads NO_PROXY, or no_proxy when NO_PROXY is unset.
    base = before ?? Deno.env.get("no_proxy");
    Deno.env.set("NO_PROXY", base ? `${base},${LOOPBACK_NO_PROXY}` : LOOPBACK_NO_PROXY);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) {
      return caCerts && Deno.createHttpClient({ caCerts });
    }
    throw error;
  }
  try {
    return Deno.createHttpClient({ caCerts });
  } finally {
    if (before === undefined) Deno.env.delete("NO_PROXY");
    else Deno.env.set("NO_PROXY", before);
  }
}

/**
 * Makes a {@linkcode DirectFetch}; dispose of it to close the clients it made.
 *
 * @param caCerts PEM certificates every client trusts beside the system's (`ca-file`).
 * @returns The fetch.
 */
export function directLoopbackFetch(caCerts?: string[]): DirectFetch {
  const clients = new Map<string, Deno.HttpClient | undefined>();
  // Other hosts' client: Deno's own settings (proxies included), made ahead by prepare(), or at
  // the first request when it must trust a CA file.
  let other: Deno.HttpClient | undefined;
  const otherClient = () => other ??= Deno.createHttpClient({ caCerts });
  const clientFor = (url: URL): Deno.HttpClient | undefined => {
    if (!isLoopbackHostname(url.hostname)) return other ?? (caCerts && otherClient());
    const key = url.protocol === "https:" ? "https:" : url.host;
    if (!clients.has(key)) {
      clients.set(
        key,
        url.protocol === "https:" ? noProxyClient(caCerts) : Deno.createHttpClient({
          proxy: {
            transport: "tcp",
            hostname: url.hostname.replace(/^\[(.*)\]$/, "$1"),
            port: Number(url.port) || 80,
          },
        }),
      );
    }
    return clients.get(key);
  };
  const direct = async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const client = clientFor(new URL(input instanceof Request ? input.url : input));
    return await fetch(input, client === undefined ? init : { ...init, client });
  };
  return {
    fetch: direct,
    prepare(url: URL) {
      if (isLoopbackHostname(url.hostname)) clientFor(url);
      else otherClient();
    },
    [Symbol.dispose]() {
      for (const client of clients.values()) client?.close();
      clients.clear();
      other?.close();
      other = undefined;
    },
  };
}
