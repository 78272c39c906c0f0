// The one rule for every URL the client sends a request to: https, or plain http to loopback.

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
 * Parses a URL that a request will be sent to and checks it is safe to send credentials to.
 *
 * @param value The URL.
 * @param what What the URL is, for the message (`Token endpoint`, `Issuer`, …).
 * @returns The parsed URL.
 * @throws {TypeError} If the URL is not absolute, is neither https nor loopback http, carries
 * credentials or has a fragment.
 */
export function parseSecureUrl(value: string | URL, what: string): URL {
  const text = String(value);
  if (!URL.canParse(text)) {
    throw new TypeError(
      `${what} "${text}" is not an absolute URL: use a URL such as "https://sts.example.com/token"`,
    );
  }
  const url = new URL(text);
  if (url.username !== "" || url.password !== "") {
    throw new TypeError(
      `${what} "${url.protocol}//${url.host}${url.pathname}" must not contain credentials: use a client ID and secret instead`,
    );
  }
  if (
    url.protocol !== "https:" && !(url.protocol === "http:" && isLoopbackHostname(url.hostname))
  ) {
    throw new TypeError(
      `${what} "${text}" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])`,
    );
  }
  if (url.hash !== "") {
    throw new TypeError(`${what} "${text}" must not have a fragment ("${url.hash}")`);
  }
  return url;
}
