import assert from "node:assert/strict";
import {
  isAbsoluteUriWithoutFragment,
  isLoopbackHostname,
  parseIssuerUrl,
  parseSecureUrl,
  parseSingleHostUrl,
} from "./_url.ts";

Deno.test("isLoopbackHostname() knows localhost, 127.0.0.0/8 and [::1], and nothing else", () => {
  assert.deepEqual(
    ["localhost", "LOCALHOST", "127.0.0.1", "127.255.0.9", "[::1]"].map(isLoopbackHostname),
    [true, true, true, true, true],
  );
  assert.deepEqual(
    ["localhost.example.com", "128.0.0.1", "10.0.0.1", "[::2]", "0.0.0.0"].map(isLoopbackHostname),
    [false, false, false, false, false],
  );
});

Deno.test("parseSecureUrl() allows https, and plain http to loopback only, without credentials or a fragment", () => {
  assert.equal(parseSecureUrl("http://[::1]:8080/t", "Token endpoint").port, "8080");
  const cases: [string, string][] = [
    [
      "sts.example.com/token",
      'Token endpoint "sts.example.com/token" is not an absolute URL: use a URL such as "https://sts.example.com/token"',
    ],
    [
      "http://sts.example.com/token",
      'Token endpoint "http://sts.example.com/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ],
    [
      "https://u:p@sts.example.com/token",
      'Token endpoint "https://sts.example.com/token" must not contain credentials: use a client ID and secret instead',
    ],
    [
      "https://sts.example.com/token#x",
      'Token endpoint "https://sts.example.com/token#x" must not have a fragment ("#x")',
    ],
  ];
  for (const [url, message] of cases) {
    assert.throws(() => parseSecureUrl(url, "Token endpoint"), new TypeError(message));
  }
});

Deno.test("parseIssuerUrl() also refuses a query, which the metadata paths cannot carry", () => {
  assert.equal(parseIssuerUrl("https://dex.example.com/dex", "Issuer").pathname, "/dex");
  assert.throws(
    () => parseIssuerUrl("https://dex.example.com/?a=1", "Issuer"),
    new TypeError('Issuer "https://dex.example.com/?a=1" must not have a query ("?a=1")'),
  );
});

Deno.test("parseSingleHostUrl() checks the URL as written, and then the rules it is given", () => {
  const parse = (url: string) =>
    parseSingleHostUrl(url, "Issuer (issuer)", "client-id", parseIssuerUrl);
  assert.equal(parse("https://[2001:db8::1]:8443/").host, "[2001:db8::1]:8443");
  assert.throws(
    () => parse("https://issuer.example.com/?x=1"),
    new TypeError(
      'Issuer (issuer) "https://issuer.example.com/?x=1" must not have a query ("?x=1")',
    ),
  );
  assert.throws(
    () => parse("https://a@issuer.example.com/"),
    new TypeError(
      "Issuer (issuer) must not contain a user name or password (user@host): use client-id instead",
    ),
  );
  // A token in a mistaken URL is masked in the message.
  const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
  assert.throws(
    () => parse(`https://issuer.example.com:${jwt}/`),
    new TypeError(
      'Issuer (issuer) "https://issuer.example.com:***/" has port "***": use a port from 1 to 65535',
    ),
  );
});

Deno.test("isAbsoluteUriWithoutFragment() is RFC 8693's rule for resource", () => {
  assert.deepEqual(
    ["https://api.example.com", "urn:example:api", "api", "https://api.example.com/#x", ""].map(
      isAbsoluteUriWithoutFragment,
    ),
    [true, true, false, false, false],
  );
});
