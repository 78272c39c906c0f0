// The fault catalogue: what a token endpoint (or what stands in front of it) can do wrong, what the
// client must do about it, and a runner that records what it did. tests/faults_test.ts holds each
// observation to the expected one, and docs/reliability.md's table is generated from the same
// observations (tests/_reliability.ts), so the table states only what the suite saw.

import { Buffer } from "node:buffer";
import { discover } from "../_discovery.ts";
import { TokenExchangeError } from "../_errors.ts";
import { exchange } from "../_exchange.ts";
import type { HttpInternals, HttpOptions } from "../_http.ts";
import {
  bomb,
  type Encoding,
  every,
  flood,
  head,
  json,
  refusedUrl,
  type Reply,
  type RequestLine,
  send,
  sendChunked,
  startFaultServer,
} from "./_fault_server.ts";
import { TEST_CERT } from "./_tls.ts";
import { CLIENT_SECRET, SUBJECT_TOKEN } from "./_tokens.ts";

/** The token the well-behaved answers carry. */
export const FAULT_TOKEN = "fault-suite-access-token";
const TOKEN_JSON = JSON.stringify({
  access_token: FAULT_TOKEN,
  issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
  token_type: "Bearer",
  expires_in: 3600,
});
const TOKEN_RESULT = `token "${FAULT_TOKEN}", expires in 3600 s`;
/** The clock the Retry-After dates are read against. */
export const NOW = Date.parse("2026-11-26T12:00:00Z");

/** What one run of a fault came to; deterministic, so the README can show it. */
export interface Observation {
  /** `token "…"`, or the error's class and message (port numbers as PORT). */
  result: string;
  /** How many complete requests the server received. */
  requests: number;
  /** The waits between attempts, in milliseconds (recorded, not waited). */
  waits: number[];
}

export interface Fault {
  /** What the server does. */
  fault: string;
  /** What the client must do, in words. */
  expected: string;
  /** The server's answer to each request; none means nothing listens on the port. */
  reply?: (index: number, request: RequestLine) => Reply;
  /** Discover the token endpoint from the server as the issuer first. */
  issuer?: boolean;
  /** The server speaks https (with tests/_tls.ts's certificate, which the client trusts). */
  tls?: boolean;
  /** Extra attempts. */
  retries: number;
  /** Per-attempt timeout in milliseconds. */
  timeout: number;
  /** The observation the suite requires. */
  outcome: Observation;
  /** For faults also run through cli.ts: its `--retries` and first line of stderr (`PORT` for the port). */
  cli?: { retries: number; line: string };
}

const SHORT = { retries: 1, timeout: 300 } as const;
const ENDPOINT = 'token endpoint "http://127.0.0.1:PORT/token"';
const HTML_502 = "<html><head><title>502 Bad Gateway</title></head><body><h1>502 Bad Gateway</h1>" +
  "<hr><center>nginx</center></body></html>";
const HTML_504 = "<html><body><h1>504 Gateway Time-out</h1>The server didn't respond in time." +
  "</body></html>";

/** A 503, then on the next request the token. */
function busyThenToken(headers: Record<string, string>, status = 503): (index: number) => Reply {
  return (index) =>
    index === 0 ? send(status, { "content-type": "text/plain", ...headers }, "busy") : json(
      200,
      TOKEN_JSON,
    );
}

function redirect(status: number): Fault {
  return {
    fault: `HTTP ${status} with Location: /v2/token`,
    expected: "`RedirectError` naming the Location; the request is not resent anywhere",
    reply: () => send(status, { location: "/v2/token" }),
    ...SHORT,
    outcome: {
      result:
        `RedirectError: Token endpoint redirected (HTTP ${status}) to "/v2/token"; the request was not resent: set the token endpoint to the final URL`,
      requests: 1,
      waits: [],
    },
    ...(status === 307
      ? {
        cli: {
          retries: 0,
          line:
            'Token endpoint redirected (HTTP 307) to "/v2/token"; the request was not resent: set the token endpoint to the final URL',
        },
      }
      : {}),
  };
}

/** What a compression bomb decodes to: 64 times the body size cap. */
const BOMB_SIZE = 64 * 1024 * 1024;
const ENCODINGS: readonly Encoding[] = ["gzip", "br", "deflate", "zstd"];
/** The encodings Deno's fetch decodes (it asks for them with Accept-Encoding: gzip, br). */
const DECODED = new Set<Encoding>(["gzip", "br"]);

/** The body size cap, hit after decoding. */
function capped(what: string, encoding: Encoding): string {
  return `ResponseTooLargeError: ${what} sent a body of more than 1048576 bytes (Content-Encoding "${encoding}")`;
}

/** A compression bomb on each read path, in one encoding. */
function bombs(encoding: Encoding): Fault[] {
  const headers = { "content-type": "application/json", "content-encoding": encoding };
  const decoded = DECODED.has(encoding);
  const size = bomb(encoding, BOMB_SIZE).length;
  const expected = decoded
    ? "`ResponseTooLargeError` once 1 MiB is decoded, holding no more than that"
    : "Deno's fetch does not decode it: the compressed bytes are described, never decoded";
  const undecoded = (what: string) =>
    `${what} (application/json, ${size} bytes, Content-Encoding "${encoding}")`;
  // A 200 bomb's outcome, whether it comes with a Content-Length or chunked.
  const bomb200 = {
    result: decoded
      ? capped("Token endpoint", encoding)
      : `InvalidResponseError: ${
        undecoded("Token endpoint answered HTTP 200 with a body that is not UTF-8 text")
      }`,
    requests: 1,
    waits: [],
  };
  return [
    {
      fault: `200 with a ${encoding} bomb (64 MiB of spaces) and its Content-Length`,
      expected,
      reply: () => send(200, headers, bomb(encoding, BOMB_SIZE)),
      ...SHORT,
      outcome: bomb200,
      ...(encoding === "gzip"
        ? {
          cli: {
            retries: 0,
            line: 'Token endpoint sent a body of more than 1048576 bytes (Content-Encoding "gzip")',
          },
        }
        : {}),
    },
    {
      fault: `200 with a ${encoding} bomb, chunked`,
      expected,
      reply: () => sendChunked(200, headers, bomb(encoding, BOMB_SIZE)),
      ...SHORT,
      outcome: bomb200,
    },
    {
      fault: `400 error body that is a ${encoding} bomb`,
      expected,
      reply: () => send(400, headers, bomb(encoding, BOMB_SIZE)),
      ...SHORT,
      outcome: {
        result: decoded ? capped("Token endpoint", encoding) : `HttpStatusError: ${
          undecoded(
            "Token endpoint answered HTTP 400 Bad Request with a body that is not UTF-8 text",
          )
        }`,
        requests: 1,
        waits: [],
      },
    },
    {
      fault: `Issuer metadata that is a ${encoding} bomb`,
      expected,
      issuer: true,
      reply: () => send(200, headers, bomb(encoding, BOMB_SIZE)),
      ...SHORT,
      outcome: {
        result: decoded
          ? capped("Issuer", encoding)
          : 'DiscoveryError: Cannot discover the token endpoint of issuer "http://127.0.0.1:PORT" (http://127.0.0.1:PORT/.well-known/openid-configuration: HTTP 200 with a body that is not JSON; http://127.0.0.1:PORT/.well-known/oauth-authorization-server: HTTP 200 with a body that is not JSON): check the issuer URL or set token-endpoint instead',
        requests: decoded ? 1 : 2,
        waits: [],
      },
      ...(encoding === "br"
        ? {
          cli: {
            retries: 0,
            line: 'Issuer sent a body of more than 1048576 bytes (Content-Encoding "br")',
          },
        }
        : {}),
    },
  ];
}

/** Text that tries to start log lines of its own: Buildkite's, and this tool's. */
const FORGED =
  "bad\n^^^ +++\r\n~~~ :key: fine\u0085--- x\u2028+++ y\u001b[2K\u009b1Gtoken-exchange: ok";

/** Metadata for the issuer the fault server is, with `fields` on top. */
function metadata(fields: (origin: string) => Record<string, unknown>): (
  index: number,
  request: RequestLine,
) => Reply {
  return (_index, request) => (socket) => {
    if (request.method === "POST") return json(200, TOKEN_JSON)(socket, 0);
    const address = socket.address() as { port: number };
    const tls = "encrypted" in socket;
    const issuer = `${tls ? "https" : "http"}://127.0.0.1:${address.port}`;
    json(200, JSON.stringify(fields(issuer)))(socket, 0);
  };
}

/** A test's worth of faults: its name says what the client must do with them. */
export interface FaultGroup {
  test: string;
  faults: readonly Fault[];
}

/** Every fault the suite tries, in docs/reliability.md's order. */
export const FAULT_GROUPS: readonly FaultGroup[] = [
  {
    test: "exchangeToken() reports a broken connection as a NetworkError, after its retries",
    faults: [
      {
        fault: "Connection refused (nothing listens)",
        expected: "`NetworkError` after retries + 1 attempts, with backoff between",
        retries: 2,
        timeout: 300,
        outcome: {
          result:
            `NetworkError: Cannot reach ${ENDPOINT}: error sending request for url (http://127.0.0.1:PORT/token): client error (Connect): tcp connect error: Connection refused (after 3 attempts)`,
          requests: 0,
          waits: [375, 750],
        },
        cli: {
          retries: 1,
          line:
            `Cannot reach ${ENDPOINT}: error sending request for url (http://127.0.0.1:PORT/token): client error (Connect): tcp connect error: Connection refused (after 2 attempts): check the URL and that this agent can reach the host`,
        },
      },
      {
        fault: "Connection closed after the request, before any answer",
        expected: "`NetworkError` after retries + 1 attempts",
        reply: () => (socket) => void socket.end(),
        ...SHORT,
        outcome: {
          result:
            `NetworkError: Cannot reach ${ENDPOINT}: error sending request from 127.0.0.1:PORT for http://127.0.0.1:PORT/token (127.0.0.1:PORT): client error (SendRequest): connection closed before message completed (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "Connection reset (TCP RST) mid-body",
        expected: "`NetworkError` after retries + 1 attempts",
        reply: () => (socket) => {
          socket.write(head(200, { "content-type": "application/json", "content-length": 100 }));
          socket.write('{"access_token":"fault-');
          setTimeout(() => socket.resetAndDestroy(), 50);
        },
        ...SHORT,
        outcome: {
          result:
            `NetworkError: Cannot reach ${ENDPOINT}: error reading a body from connection (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
        cli: {
          retries: 0,
          line:
            `Cannot reach ${ENDPOINT}: error reading a body from connection: check the URL and that this agent can reach the host`,
        },
      },
      {
        fault: "Connection closed mid-body, short of its Content-Length",
        expected: "`NetworkError` after retries + 1 attempts",
        reply: () => (socket) => {
          socket.end(
            head(200, { "content-type": "application/json", "content-length": 100 }) +
              '{"access_token":"fault-',
          );
        },
        ...SHORT,
        outcome: {
          result:
            `NetworkError: Cannot reach ${ENDPOINT}: error reading a body from connection (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "Chunked body cut off before its last chunk",
        expected: "`NetworkError` after retries + 1 attempts",
        reply: () => (socket) => {
          socket.end(
            head(200, { "content-type": "application/json", "transfer-encoding": "chunked" }) +
              '10\r\n{"access_token":"\r\n',
          );
        },
        ...SHORT,
        outcome: {
          result:
            `NetworkError: Cannot reach ${ENDPOINT}: error reading a body from connection (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "Not HTTP at all (an SSH banner)",
        expected: "`NetworkError` after retries + 1 attempts",
        reply: () => (socket) => void socket.end("SSH-2.0-OpenSSH_9.6\r\n"),
        ...SHORT,
        outcome: {
          result:
            `NetworkError: Cannot reach ${ENDPOINT}: error sending request from 127.0.0.1:PORT for http://127.0.0.1:PORT/token (127.0.0.1:PORT): client error (SendRequest): invalid HTTP version parsed (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
    ],
  },
  {
    test:
      "exchangeToken() times out a server that stalls, in the headers or the body, within (retries + 1) × timeout",
    faults: [
      {
        fault: "Accepts the request and never answers",
        expected: "`TimeoutError` after (retries + 1) × timeout",
        reply: () => () => {},
        ...SHORT,
        outcome: {
          result:
            `TimeoutError: Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
        cli: {
          retries: 0,
          line:
            `Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s: raise --timeout, or check this agent can reach the endpoint`,
        },
      },
      {
        fault: "Status line, then headers that trickle a byte every 20 ms forever",
        expected: "`TimeoutError`: the timeout covers the headers",
        reply: () => (socket) => {
          socket.write("HTTP/1.1 200 OK\r\nX-Slow: ");
          every(socket, 20, () => socket.write("a"));
        },
        ...SHORT,
        outcome: {
          result:
            `TimeoutError: Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "Headers at once, then a body that trickles a byte every 20 ms forever",
        expected: "`TimeoutError`: the timeout covers the body too",
        reply: () => (socket) => {
          socket.write(
            head(200, { "content-type": "application/json", "transfer-encoding": "chunked" }),
          );
          socket.write('11\r\n{"access_token":"\r\n');
          every(socket, 20, () => socket.write("1\r\na\r\n"));
        },
        ...SHORT,
        outcome: {
          result:
            `TimeoutError: Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
        cli: {
          retries: 0,
          line:
            `Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s: raise --timeout, or check this agent can reach the endpoint`,
        },
      },
      {
        // A declared length takes the client's read-it-whole path rather than the stream reader.
        fault:
          "Headers with a Content-Length of 1000, then a body that trickles a byte every 20 ms",
        expected: "`TimeoutError`: the timeout covers a body of known length too",
        reply: () => (socket) => {
          socket.write(head(200, { "content-type": "application/json", "content-length": "1000" }));
          socket.write('{"access_token":"');
          every(socket, 20, () => socket.write("a"));
        },
        ...SHORT,
        outcome: {
          result:
            `TimeoutError: Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
        cli: {
          retries: 0,
          line:
            `Token endpoint "http://127.0.0.1:PORT/token" did not answer within 0.3 s: raise --timeout, or check this agent can reach the endpoint`,
        },
      },
    ],
  },
  {
    test:
      "exchangeToken() honours Retry-After in seconds or as a date, ignores a negative one and caps it at 30 s",
    faults: [
      {
        fault: "503 with Retry-After: 2",
        expected: "waits 2 s, then gets the token",
        reply: busyThenToken({ "retry-after": "2" }),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 2, waits: [2000] },
      },
      {
        fault: "429 with Retry-After as an HTTP date 7 s ahead",
        expected: "waits 7 s, then gets the token",
        reply: busyThenToken({ "retry-after": "Thu, 26 Nov 2026 12:00:07 GMT" }, 429),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 2, waits: [7000] },
      },
      {
        fault: "429 with Retry-After as an HTTP date in the past",
        expected: "retries at once, then gets the token",
        reply: busyThenToken({ "retry-after": "Wed, 25 Nov 2026 12:00:00 GMT" }, 429),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 2, waits: [0] },
      },
      {
        fault: "503 with Retry-After: -5",
        expected: "ignores it and backs off as usual, then gets the token",
        reply: busyThenToken({ "retry-after": "-5" }),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 2, waits: [375] },
      },
      {
        fault: "503 with Retry-After: 99999999999999999999",
        expected: "waits the 30 s cap, then gets the token",
        reply: busyThenToken({ "retry-after": "99999999999999999999" }),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 2, waits: [30_000] },
      },
      {
        fault: "503 with Retry-After: 2, every time",
        expected: "`HttpStatusError` after retries + 1 attempts",
        reply: () => send(503, { "content-type": "text/plain", "retry-after": "2" }, "busy"),
        retries: 2,
        timeout: 300,
        outcome: {
          result:
            'HttpStatusError: Token endpoint answered HTTP 503 Service Unavailable (text/plain): "busy" (after 3 attempts)',
          requests: 3,
          waits: [2000, 2000],
        },
      },
    ],
  },
  {
    test: "exchangeToken() refuses every 3xx without resending the request",
    faults: [
      ...[300, 301, 302, 303, 304, 305, 307, 308].map(redirect),
    ],
  },
  {
    test:
      "exchangeToken() takes a token only from HTTP 200 with a JSON object holding a string access_token",
    faults: [
      {
        fault: "200 with a JSON array",
        expected: "`InvalidResponseError`, not retried",
        reply: () => json(200, `[${TOKEN_JSON}]`),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 200 with an array where a JSON object was expected",
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line: "Token endpoint answered HTTP 200 with an array where a JSON object was expected",
        },
      },
      {
        fault: "200 with a JSON string",
        expected: "`InvalidResponseError`",
        reply: () => json(200, JSON.stringify(FAULT_TOKEN)),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 200 with a string where a JSON object was expected",
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "200 with JSON `null`",
        expected: "`InvalidResponseError`",
        reply: () => json(200, "null"),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 200 with null where a JSON object was expected",
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "200 with a numeric access_token",
        expected: "`InvalidResponseError`",
        reply: () => json(200, '{"access_token":12345,"token_type":"Bearer"}'),
        ...SHORT,
        outcome: {
          result:
            'InvalidResponseError: Token endpoint answered HTTP 200 with a number "access_token" where a string was expected',
          requests: 1,
          waits: [],
        },
      },
      {
        fault: '200 with expires_in as the string "3600"',
        expected: "the token, with expires_in read as 3600",
        reply: () => json(200, JSON.stringify({ access_token: FAULT_TOKEN, expires_in: "3600" })),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 1, waits: [] },
      },
      {
        fault: "200 with access_token twice in one object",
        expected: "the last one, as every JSON.parse reads it",
        reply: () => json(200, `{"access_token":"first-token","access_token":"${FAULT_TOKEN}"}`),
        ...SHORT,
        outcome: { result: `token "${FAULT_TOKEN}"`, requests: 1, waits: [] },
      },
      {
        fault: "200 with a UTF-8 byte order mark before the JSON",
        expected: "the token (RFC 8259 §8.1 lets a parser skip the BOM)",
        reply: () => json(200, `\uFEFF${TOKEN_JSON}`),
        ...SHORT,
        outcome: { result: TOKEN_RESULT, requests: 1, waits: [] },
      },
      {
        fault: "200 with invalid UTF-8 in the JSON",
        expected: "`InvalidResponseError`",
        reply: () =>
          json(
            200,
            Buffer.concat([
              Buffer.from('{"access_token":"fault-'),
              Buffer.from([0xff, 0xfe]),
              Buffer.from('"}'),
            ]),
          ),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 200 with a body that is not UTF-8 text (application/json, 27 bytes)",
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "200 with an empty body",
        expected: "`InvalidResponseError` describing the body",
        reply: () => json(200, ""),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 200 with an empty body (application/json, 0 bytes)",
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "201 with a token",
        expected: "`InvalidResponseError` (a token response is HTTP 200), describing the body",
        reply: () => json(201, TOKEN_JSON),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 201 (application/json, 151 bytes), but a token response must be HTTP 200 (RFC 6749 §5.1)",
          requests: 1,
          waits: [],
        },
      },
    ],
  },
  {
    test: "exchangeToken() refuses a body over 1 MiB, announced or sent, without retrying",
    faults: [
      {
        fault: "200 announcing Content-Length: 2147483648 (2 GiB)",
        expected: "`ResponseTooLargeError` at once, body unread, not retried",
        reply: () => (socket) => {
          socket.write(
            head(200, { "content-type": "application/json", "content-length": 2 ** 31 }),
          );
          socket.write('{"access_token":"');
        },
        ...SHORT,
        outcome: {
          result:
            "ResponseTooLargeError: Token endpoint announced a 2147483648-byte body, more than the 1048576-byte limit",
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line: "Token endpoint announced a 2147483648-byte body, more than the 1048576-byte limit",
        },
      },
      {
        fault: "200 with an endless chunked body, as fast as it can",
        expected: "`ResponseTooLargeError` once 1 MiB is read",
        reply: () => (socket) => {
          socket.write(
            head(200, { "content-type": "application/json", "transfer-encoding": "chunked" }),
          );
          socket.write('11\r\n{"access_token":"\r\n');
          flood(socket, Buffer.from(`10000\r\n${"a".repeat(0x10000)}\r\n`));
        },
        ...SHORT,
        outcome: {
          result: "ResponseTooLargeError: Token endpoint sent a body of more than 1048576 bytes",
          requests: 1,
          waits: [],
        },
      },
    ],
  },
  {
    test:
      "exchangeToken() retries a proxy's HTML error page, then summarises it with every secret masked",
    faults: [
      {
        fault: "502 HTML page from a proxy",
        expected: "retried; then `HttpStatusError` with status, type and the page's start",
        reply: () => send(502, { "content-type": "text/html" }, HTML_502),
        ...SHORT,
        outcome: {
          result:
            `HttpStatusError: Token endpoint answered HTTP 502 Bad Gateway (text/html): "${HTML_502}" (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "504 HTML page from a proxy",
        expected: "retried; then `HttpStatusError` with status, type and the page's start",
        reply: () => send(504, { "content-type": "text/html; charset=utf-8" }, HTML_504),
        ...SHORT,
        outcome: {
          result:
            `HttpStatusError: Token endpoint answered HTTP 504 Gateway Timeout (text/html): "${HTML_504}" (after 2 attempts)`,
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "502 HTML page that echoes the client secret and subject token it was sent",
        expected: "`HttpStatusError` with every secret masked",
        reply: () => (socket) => {
          const form = new URLSearchParams([["client_secret", CLIENT_SECRET]]);
          send(
            502,
            { "content-type": "text/html" },
            `<pre>${form} token=${SUBJECT_TOKEN}</pre>`,
          )(socket, 0);
        },
        ...SHORT,
        outcome: {
          result:
            'HttpStatusError: Token endpoint answered HTTP 502 Bad Gateway (text/html): "<pre>client_secret=*** token=***</pre>" (after 2 attempts)',
          requests: 2,
          waits: [375],
        },
        cli: {
          retries: 0,
          line:
            'Token endpoint answered HTTP 502 Bad Gateway (text/html): "<pre>client_secret=*** token=***</pre>"',
        },
      },
      {
        fault: "401 HTML page (not an OAuth error)",
        expected: "`HttpStatusError`, not retried",
        reply: () => send(401, { "content-type": "text/html" }, "<h1>Unauthorized</h1>"),
        ...SHORT,
        outcome: {
          result:
            'HttpStatusError: Token endpoint answered HTTP 401 Unauthorized (text/html): "<h1>Unauthorized</h1>"',
          requests: 1,
          waits: [],
        },
      },
    ],
  },
  {
    test:
      "exchangeToken() and discovery hold a compression bomb to 1 MiB once decoded, on every read path and in every encoding",
    faults: ENCODINGS.flatMap(bombs),
  },
  {
    test:
      "exchangeToken() flattens what it quotes from a server onto one line, so it cannot forge a log line",
    faults: [
      {
        fault:
          "400 OAuth error whose error, error_description and error_uri hold line breaks, `^^^ +++` and escape sequences",
        expected: "`OAuthError` with each field on one line",
        reply: () =>
          json(
            400,
            JSON.stringify({ error: FORGED, error_description: FORGED, error_uri: FORGED }),
          ),
        ...SHORT,
        outcome: {
          result:
            'OAuthError: Token endpoint refused the exchange: HTTP 400, error "bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok": "bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok" (see bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok)',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'Token endpoint refused the exchange: HTTP 400, error "bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok": "bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok" (see bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok)',
        },
      },
      {
        fault: "302 with a Location holding a C1 line break (NEL) and `^^^ +++`",
        expected: "`RedirectError` naming the Location on one line",
        reply: () => (socket) => {
          socket.end(
            Buffer.concat([
              Buffer.from(head(302, { "content-length": 0, connection: "close" }).slice(0, -2)),
              Buffer.from("location: /v2/token"),
              Buffer.from([0x85]),
              Buffer.from("^^^ +++ token-exchange: fine\r\n\r\n"),
            ]),
          );
        },
        ...SHORT,
        outcome: {
          result:
            'RedirectError: Token endpoint redirected (HTTP 302) to "/v2/token ^^^ +++ token-exchange: fine"; the request was not resent: set the token endpoint to the final URL',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'Token endpoint redirected (HTTP 302) to "/v2/token ^^^ +++ token-exchange: fine"; the request was not resent: set the token endpoint to the final URL',
        },
      },
      {
        fault: "502 text page whose lines start with `^^^ +++`, `~~~` and `token-exchange:`",
        expected: "`HttpStatusError` quoting the page on one line",
        reply: () => send(502, { "content-type": "text/plain" }, FORGED),
        ...SHORT,
        outcome: {
          result:
            'HttpStatusError: Token endpoint answered HTTP 502 Bad Gateway (text/plain): "bad ^^^ +++ ~~~ :key: fine --- x +++ y [2K 1Gtoken-exchange: ok" (after 2 attempts)',
          requests: 2,
          waits: [375],
        },
      },
      {
        fault: "200 text page whose lines start with `^^^ +++`, `~~~` and `token-exchange:`",
        expected: "`InvalidResponseError` describing the body, never quoting it",
        reply: () => send(200, { "content-type": "text/plain" }, FORGED),
        ...SHORT,
        outcome: {
          result:
            "InvalidResponseError: Token endpoint answered HTTP 200 with a body that is not JSON (text/plain, 68 bytes)",
          requests: 1,
          waits: [],
        },
      },
    ],
  },
  {
    test:
      "exchangeToken() takes only an access_token of printable ASCII (RFC 6749 Appendix A.12), at most 64 KiB, and never quotes a bad one",
    faults: [
      {
        fault: "200 with an access_token holding a line break and `^^^ +++`",
        expected: "`InvalidResponseError` naming the rule, not the token",
        reply: () => json(200, JSON.stringify({ access_token: `${FAULT_TOKEN}\n^^^ +++` })),
        ...SHORT,
        outcome: {
          result:
            'InvalidResponseError: Token endpoint answered HTTP 200 with an "access_token" that has U+000A at character 25, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'Token endpoint answered HTTP 200 with an "access_token" that has U+000A at character 25, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
        },
      },
      {
        fault: "200 with an access_token holding an escape sequence",
        expected: "`InvalidResponseError` naming the rule, not the token",
        reply: () => json(200, JSON.stringify({ access_token: `${FAULT_TOKEN}\u001b[2J` })),
        ...SHORT,
        outcome: {
          result:
            'InvalidResponseError: Token endpoint answered HTTP 200 with an "access_token" that has U+001B at character 25, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "200 with a non-ASCII access_token",
        expected: "`InvalidResponseError` naming the rule, not the token",
        reply: () => json(200, JSON.stringify({ access_token: `${FAULT_TOKEN}-\u00e9\u00e8` })),
        ...SHORT,
        outcome: {
          result:
            'InvalidResponseError: Token endpoint answered HTTP 200 with an "access_token" that has U+00E9 at character 26, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "200 with an access_token of 64 KiB + 1 characters",
        expected: "`InvalidResponseError` naming the rule, not the token",
        reply: () => json(200, JSON.stringify({ access_token: "a".repeat(64 * 1024 + 1) })),
        ...SHORT,
        outcome: {
          result:
            'InvalidResponseError: Token endpoint answered HTTP 200 with an "access_token" that is 65537 characters long, more than the 65536 allowed',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'Token endpoint answered HTTP 200 with an "access_token" that is 65537 characters long, more than the 65536 allowed',
        },
      },
      {
        fault: "200 with an empty access_token",
        expected: "`InvalidResponseError`",
        reply: () => json(200, JSON.stringify({ access_token: "", token_type: "Bearer" })),
        ...SHORT,
        outcome: {
          result:
            'InvalidResponseError: Token endpoint answered HTTP 200 with an empty "access_token"',
          requests: 1,
          waits: [],
        },
      },
    ],
  },
  {
    test:
      "discovery refuses metadata that would send the token elsewhere: another issuer, another host, or http under https",
    faults: [
      {
        fault: "Issuer metadata naming another issuer",
        expected: "`DiscoveryError`; no token request",
        issuer: true,
        reply: metadata((origin) => ({
          issuer: "https://evil.example.com",
          token_endpoint: `${origin}/token`,
        })),
        ...SHORT,
        outcome: {
          result:
            'DiscoveryError: Issuer metadata at http://127.0.0.1:PORT/.well-known/openid-configuration names issuer "https://evil.example.com", not "http://127.0.0.1:PORT": set the issuer to exactly what its tokens say, or set token-endpoint instead',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'Issuer metadata at http://127.0.0.1:PORT/.well-known/openid-configuration names issuer "https://evil.example.com", not "http://127.0.0.1:PORT": set the issuer to exactly what its tokens say, or set --token-endpoint instead',
        },
      },
      {
        fault: "Issuer metadata without an issuer",
        expected: "`DiscoveryError`; no token request",
        issuer: true,
        reply: metadata((origin) => ({ token_endpoint: `${origin}/token` })),
        ...SHORT,
        outcome: {
          result:
            'DiscoveryError: Issuer metadata at http://127.0.0.1:PORT/.well-known/openid-configuration has no "issuer" (RFC 8414 §3.3 requires it to match): set token-endpoint instead of issuer',
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "Issuer metadata whose token_endpoint is on another host",
        expected: "`DiscoveryError` saying to set token-endpoint; no token request",
        issuer: true,
        reply: metadata((origin) => ({
          issuer: origin,
          token_endpoint: "https://sts.example.com/token",
        })),
        ...SHORT,
        outcome: {
          result:
            'DiscoveryError: The discovered token endpoint "https://sts.example.com/token" is not on the issuer\'s host "127.0.0.1:PORT", and this run may reach only that: set token-endpoint to it instead of issuer',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'The discovered token endpoint "https://sts.example.com/token" is not on the issuer\'s host "127.0.0.1:PORT", and this run may reach only that: set --token-endpoint to it instead of --issuer',
        },
      },
      {
        fault:
          "Issuer metadata whose token_endpoint names the issuer's address otherwise (localhost)",
        expected: "`DiscoveryError` saying to set token-endpoint: hosts are compared as named",
        issuer: true,
        reply: metadata((origin) => ({
          issuer: origin,
          token_endpoint: `${origin.replace("127.0.0.1", "localhost")}/token`,
        })),
        ...SHORT,
        outcome: {
          result:
            'DiscoveryError: The discovered token endpoint "http://localhost:PORT/token" is not on the issuer\'s host "127.0.0.1:PORT", and this run may reach only that: set token-endpoint to it instead of issuer',
          requests: 1,
          waits: [],
        },
      },
      {
        fault: "https issuer metadata whose token_endpoint is plain http on the same host and port",
        expected: "`DiscoveryError`: no downgrade to http; no token request",
        issuer: true,
        tls: true,
        reply: metadata((origin) => ({
          issuer: origin,
          token_endpoint: `${origin.replace("https:", "http:")}/token`,
        })),
        ...SHORT,
        outcome: {
          result:
            'DiscoveryError: The discovered token endpoint "http://127.0.0.1:PORT/token" is plain http under an https issuer: set token-endpoint to an https URL instead of issuer',
          requests: 1,
          waits: [],
        },
        cli: {
          retries: 0,
          line:
            'The discovered token endpoint "http://127.0.0.1:PORT/token" is plain http under an https issuer: set --token-endpoint to an https URL instead of --issuer',
        },
      },
      {
        fault: "Issuer metadata with a token_endpoint on the issuer's host (control case)",
        expected: "the token, from the discovered endpoint",
        issuer: true,
        reply: metadata((origin) => ({ issuer: origin, token_endpoint: `${origin}/token` })),
        ...SHORT,
        outcome: {
          result: 'token "fault-suite-access-token", expires in 3600 s',
          requests: 2,
          waits: [],
        },
      },
    ],
  },
];

/** Every fault, in order. */
export const FAULTS: readonly Fault[] = FAULT_GROUPS.flatMap((group) => group.faults);

/** Replaces what changes from run to run (the port) or OS to OS (errno) with a placeholder. */
export function normalise(text: string): string {
  return text.replace(/(127\.0\.0\.1|localhost):\d+/g, "$1:PORT").replace(/ \(os error \d+\)/g, "");
}

/** One run of a fault: what it came to, how long it took, and the bound it must keep to. */
export interface Run {
  observation: Observation;
  /** The error, if it ended in one. */
  error: unknown;
  elapsedMs: number;
  /** (retries + 1) × timeout, plus the waits (recorded, not waited, so 0 here). */
  boundMs: number;
}

/** Runs one fault through exchange(), with time and chance under the test's control. */
export async function runFault(fault: Fault): Promise<Run> {
  const server = fault.reply === undefined ? undefined : await startFaultServer(
    (socket, index, request) => fault.reply!(index, request)(socket, index, request),
    { tls: fault.tls },
  );
  // An https server's certificate is trusted through a client of Deno's fetch.
  using client = fault.tls ? Deno.createHttpClient({ caCerts: [TEST_CERT] }) : undefined;
  const waits: number[] = [];
  const http: HttpOptions & HttpInternals = {
    retries: fault.retries,
    timeout: fault.timeout,
    sleep: (ms) => (waits.push(ms), Promise.resolve()),
    random: () => 0.5,
    now: () => NOW,
    ...(client && {
      fetch: (input, init) => fetch(input, { ...init, client }),
      platformFetch: true,
    }),
  };
  const started = performance.now();
  let result: string;
  let error: unknown;
  try {
    const response = await exchange({
      tokenEndpoint: fault.issuer
        ? await discover(server!.origin, http)
        : server?.url ?? refusedUrl(),
      subjectToken: SUBJECT_TOKEN,
      clientId: "ci",
      clientSecret: CLIENT_SECRET,
      clientAuth: "post",
      ...http,
    });
    result = `token ${JSON.stringify(response.accessToken)}` +
      (response.expiresIn === undefined ? "" : `, expires in ${response.expiresIn} s`);
  } catch (caught) {
    error = caught;
    result = caught instanceof TokenExchangeError
      ? `${caught.name}: ${normalise(caught.message)}`
      : `Unexpected ${caught instanceof Error ? caught.name : typeof caught}: ${caught}`;
  } finally {
    await server?.close();
  }
  return {
    observation: { result, requests: server?.requests.length ?? 0, waits },
    error,
    elapsedMs: performance.now() - started,
    // Discovery may take two metadata requests before the token request.
    boundMs: (fault.issuer ? 3 : 1) * (fault.retries + 1) * fault.timeout,
  };
}
