// The URL rules, in one place: which URLs a request may go to (https, or plain http to loopback;
// no credentials, no fragment), what an issuer may look like, and which URLs make one clean host
// for a Deno permission flag. Request building, discovery, the CLI and its subject-token sources
// all ask here.

import { summarise } from "./_redact.ts";

/**
 * Reports whether a URL hostname (as `URL.hostname` gives it) is a loopback address:
 * `localhost`, any `127.0.0.0/8` address or `[::1]`.
 *
 * @param hostname The hostname, with IPv6 addresses in brackets.
 * @returns `true` for a loopback hostname.
 */
export function isLoopbackHostname(hostname: string): boolean {
  const host = hostname.toLowerCase();
  return host === "localhost" || host === "[::1]" || /^127(?:\.\d{1,3}){3}$/.test(host);
}

/**
 * Parses an absolute URL, resolved against `base` if given, or gives `null`. `URL.parse()` would
 * do, but is missing from Node.js 20, Safari 17 and other runtimes this library supports.
 *
 * @param text The URL.
 * @param base The URL that a relative one is resolved against.
 * @returns The URL, or `null` when it cannot be parsed.
 */
export function parseUrl(text: string, base?: string | URL): URL | null {
  try {
    return new URL(text, base);
  } catch {
    return null;
  }
}

/**
 * Reports whether a value is an absolute URI without a fragment, as RFC 8693 §2.1 wants a
 * `resource` to be.
 *
 * @param value The value.
 * @returns `true` for an absolute URI without a fragment.
 */
export function isAbsoluteUriWithoutFragment(value: string): boolean {
  return parseUrl(value)?.hash === "";
}

/**
 * Parses a URL that a request will be sent to and checks it is safe to send credentials to.
 *
 * @param value The URL.
 * @param what What the URL is, for the message (`Token endpoint`, `Issuer`, …).
 * @returns The parsed URL.
 * @throws {TypeError} If the URL is not absolute, is neither https nor loopback http, carries
 * credentials or has a fragment.
 */
export function parseSecureUrl(value: string | URL, what: string): URL {
  const raw = String(value);
  // The URL as messages quote it: it may come from a server (discovery), so on one line, masked.
  // Made only for a message: masking costs start-up time on the way to a token.
  const text = () => summarise(raw);
  const url = parseUrl(raw);
  if (url === null) {
    throw new TypeError(
      `${what} "${text()}" is not an absolute URL: use a URL such as "https://sts.example.com/token"`,
    );
  }
  if (url.username !== "" || url.password !== "") {
    throw new TypeError(
      `${what} "${url.protocol}//${url.host}${url.pathname}" must not contain credentials: use a client ID and secret instead`,
    );
  }
  if (
    url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHostname(url.hostname))
  ) {
    throw new TypeError(
      `${what} "${text()}" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])`,
    );
  }
  if (url.hash !== "") {
    throw new TypeError(`${what} "${text()}" must not have a fragment ("${summarise(url.hash)}")`);
  }
  return url;
}

/**
 * Parses an issuer URL: {@linkcode parseSecureUrl}'s rules, and no query, since the metadata
 * paths are built from the issuer's path (RFC 8414 §3.1).
 *
 * @param value The issuer.
 * @param what What the URL is, for the message (`Issuer`, `Issuer (--issuer)`).
 * @returns The parsed URL.
 * @throws {TypeError} If the URL breaks a rule.
 */
export function parseIssuerUrl(value: string | URL, what: string): URL {
  const url = parseSecureUrl(value, what);
  if (url.search !== "") {
    throw new TypeError(
      `${what} "${summarise(url.href)}" must not have a query ("${summarise(url.search)}")`,
    );
  }
  return url;
}

/** A host name as a DNS name: labels of letters, digits, hyphens (and underscores), 253 in all. */
const DNS_NAME =
  /^(?=.{1,253}\.?$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i;
/** An IPv4 address in four decimal parts. */
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * Checks that a URL as written says exactly one host and port, which the URL parser reads the same
 * way: no whitespace or control character, no user name or password, no comma, a DNS name or an
 * IP literal, a port from 1 to 65535, and `scheme://` written out. The hooks cut a Deno permission
 * flag (`--allow-net=<host>`) from the text between `://` and the first `/`, `?` or `#`, so the
 * text itself must be clean, not only what the URL parser makes of it.
 *
 * @param raw The URL as written.
 * @param what What the URL is, for the message (`Token endpoint (--token-endpoint)`).
 * @param credentials What to use instead of a user name and password in the URL.
 * @param parse The rules the parsed URL must also meet, such as {@linkcode parseSecureUrl}.
 * @returns The parsed URL.
 * @throws {TypeError} Naming `what`, for anything else.
 */
export function parseSingleHostUrl(
  raw: string,
  what: string,
  credentials: string,
  parse: (value: string, what: string) => URL = parseSecureUrl,
): URL {
  const shown = () => JSON.stringify(summarise(raw, [], 300)).slice(1, -1);
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f\x7f-\x9f]/.test(raw)) {
    throw new TypeError(
      `${what} "${shown()}" has a space, line break or control character in it: write the URL without them`,
    );
  }
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(raw);
  const authority = scheme === null ? "" : raw.slice(scheme[0].length).split(/[/?#]/, 1)[0]!;
  if (scheme !== null) checkAuthority(authority, what, shown, credentials);
  const url = parse(raw, what);
  if (scheme === null) {
    throw new TypeError(`${what} "${shown()}" must start with "${url.protocol}//"`);
  }
  const host = authority.replace(/:\d+$/, "");
  if (!host.startsWith("[") && host.toLowerCase() !== url.hostname) {
    throw new TypeError(
      `${what} "${shown()}" has host "${
        summarise(host)
      }", which means "${url.hostname}": write "${url.hostname}" instead`,
    );
  }
  return url;
}

/** The host and port of a URL as written: one DNS name or IP literal, and a port from 1 to 65535. */
function checkAuthority(
  authority: string,
  what: string,
  shown: () => string,
  credentials: string,
) {
  if (authority.includes("@")) {
    throw new TypeError(
      `${what} must not contain a user name or password (user@host): use ${credentials} instead`,
    );
  }
  const match = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(authority);
  const host = match?.[1] ?? authority;
  const port = match?.[2];
  if (host.includes(",")) {
    throw new TypeError(
      `${what} "${shown()}" has a comma in its host "${
        summarise(host)
      }": a host is one DNS name or IP address`,
    );
  }
  if (
    match === null || host === "" ||
    (!host.startsWith("[") && !IPV4.test(host) && !DNS_NAME.test(host))
  ) {
    throw new TypeError(
      `${what} "${shown()}" has an invalid host "${
        summarise(host)
      }": use a DNS name (letters, digits and hyphens; xn-- for an international name) or an IP address`,
    );
  }
  if (
    // No leading zero: the hooks give the port to Deno's --allow-net as it is written.
    port !== undefined && !(/^[1-9]\d{0,4}$/.test(port) && Number(port) <= 65535)
  ) {
    throw new TypeError(
      `${what} "${shown()}" has port "${summarise(port)}": use a port from 1 to 65535`,
    );
  }
}
