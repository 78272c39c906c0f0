import assert from "node:assert/strict";
import {
  HttpStatusError,
  InvalidResponseError,
  OAuthError,
  RedirectError,
  ResponseTooLargeError,
} from "./_errors.ts";
import { processTokenExchangeResponse } from "./_response.ts";
import { rejection as rejected } from "./tests/_rejection.ts";

/** An issued token long enough to pass (16 characters at least). */
const AT = "issued-access-token";

const SECRET = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

/** The error processing the response throws, with SECRET as a known secret. */
function rejection(response: Response): Promise<Error> {
  return rejected(processTokenExchangeResponse(response, { secrets: [SECRET] }));
}

Deno.test("processTokenExchangeResponse() returns every field of a full response", async () => {
  const raw = {
    access_token: AT,
    issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
    token_type: "Bearer",
    expires_in: 3600,
    scope: "read write",
    refresh_token: "rt",
    extra: true,
  };
  assert.deepEqual(await processTokenExchangeResponse(Response.json(raw)), {
    accessToken: AT,
    issuedTokenType: "urn:ietf:params:oauth:token-type:access_token",
    tokenType: "Bearer",
    expiresIn: 3600,
    scope: "read write",
    refreshToken: "rt",
    raw,
  });
});

Deno.test("processTokenExchangeResponse() tolerates a missing issued_token_type and token_type, and says so", async () => {
  const lines: string[] = [];
  const result = await processTokenExchangeResponse(
    new Response(`{"access_token":"${AT}"}`, { headers: { "content-type": "text/plain" } }),
    { onDebug: (line) => lines.push(line) },
  );
  assert.equal(result.accessToken, AT);
  assert.equal(result.issuedTokenType, undefined);
  assert.equal(result.tokenType, undefined);
  assert.deepEqual(lines, [
    `The response's content type is "text/plain", not "application/json"; its JSON body was used anyway`,
    `The response has no string "issued_token_type" (RFC 8693 §2.2.1 requires one); continuing`,
    `The response has no string "token_type" (RFC 8693 §2.2.1 requires one); continuing`,
  ]);
});

Deno.test("processTokenExchangeResponse() reads a numeric string expires_in and ignores a nonsense one", async () => {
  const numeric = await processTokenExchangeResponse(
    Response.json({ access_token: AT, expires_in: "120" }),
  );
  assert.equal(numeric.expiresIn, 120);
  const nonsense = await processTokenExchangeResponse(
    Response.json({ access_token: AT, expires_in: "soon" }),
  );
  assert.equal(nonsense.expiresIn, undefined);
});

Deno.test("processTokenExchangeResponse() accepts a UTF-8 byte order mark", async () => {
  const body = new Uint8Array([
    0xef,
    0xbb,
    0xbf,
    ...new TextEncoder().encode(`{"access_token":"${AT}"}`),
  ]);
  assert.equal((await processTokenExchangeResponse(new Response(body))).accessToken, AT);
});

Deno.test("processTokenExchangeResponse() turns an RFC 6749 §5.2 error into an OAuthError with all its fields", async () => {
  const error = await rejection(Response.json({
    error: "invalid_target",
    error_description: "audience not allowed",
    error_uri: "https://sts.example.com/errors#target",
  }, { status: 400 }));
  assert.ok(error instanceof OAuthError);
  assert.deepEqual(
    {
      status: error.status,
      error: error.error,
      description: error.errorDescription,
      uri: error.errorUri,
      code: error.code,
    },
    {
      status: 400,
      error: "invalid_target",
      description: "audience not allowed",
      uri: "https://sts.example.com/errors#target",
      code: "oauth_error",
    },
  );
  assert.equal(
    error.message,
    'Token endpoint refused the exchange: HTTP 400, error "invalid_target": "audience not allowed" (see https://sts.example.com/errors#target)',
  );
});

Deno.test("processTokenExchangeResponse() masks a token the server echoes in error_description", async () => {
  const error = await rejection(Response.json({
    error: "invalid_grant",
    error_description: `token ${SECRET} has expired`,
  }, { status: 400 }));
  assert.ok(error instanceof OAuthError);
  assert.equal(error.errorDescription, "token *** has expired");
  assert.ok(!error.message.includes("c2lnbmF0dXJl"));
});

Deno.test("processTokenExchangeResponse() summarises a non-JSON error body with its status and type", async () => {
  const html = `<html><body><h1>502 Bad Gateway</h1>${"x".repeat(500)}</body></html>`;
  const error = await rejection(
    new Response(html, {
      status: 502,
      statusText: "Bad Gateway",
      headers: { "content-type": "text/html; charset=utf-8" },
    }),
  );
  assert.ok(error instanceof HttpStatusError);
  assert.equal(error.status, 502);
  assert.equal(error.contentType, "text/html");
  assert.equal(error.bodyExcerpt.length, 201);
  assert.match(
    error.message,
    /^Token endpoint answered HTTP 502 Bad Gateway \(text\/html\): "<html><body><h1>502 Bad Gateway<\/h1>x+…"$/,
  );
});

Deno.test("processTokenExchangeResponse() masks secrets in a non-JSON error body", async () => {
  const error = await rejection(new Response(`bad token=${SECRET}`, { status: 401 }));
  assert.ok(error instanceof HttpStatusError);
  assert.equal(error.bodyExcerpt, "bad token=***");
});

Deno.test("processTokenExchangeResponse() refuses a redirect and names the Location", async () => {
  const error = await rejection(
    new Response(null, { status: 307, headers: { location: "https://other.example.com/token" } }),
  );
  assert.ok(error instanceof RedirectError);
  assert.equal(error.location, "https://other.example.com/token");
  assert.equal(error.status, 307);
  assert.match(
    error.message,
    /redirected \(HTTP 307\) to "https:\/\/other.example.com\/token"; the request was not resent/,
  );
});

Deno.test("processTokenExchangeResponse() refuses a 2xx other than 200", async () => {
  const error = await rejection(Response.json({ access_token: AT }, { status: 201 }));
  assert.ok(error instanceof InvalidResponseError);
  assert.equal(
    error.message,
    "Token endpoint answered HTTP 201 (application/json, 38 bytes), but a token response must be HTTP 200 (RFC 6749 §5.1)",
  );
});

Deno.test("processTokenExchangeResponse() refuses 200 responses without a usable access_token", async (t) => {
  const cases: [string, BodyInit, string][] = [
    [
      "no access_token",
      '{"token_type":"Bearer"}',
      'Token endpoint answered HTTP 200 without an "access_token" (fields: token_type)',
    ],
    [
      "a null access_token",
      '{"access_token":null}',
      'Token endpoint answered HTTP 200 without an "access_token" (fields: access_token)',
    ],
    [
      "an empty access_token",
      '{"access_token":""}',
      'Token endpoint answered HTTP 200 with an empty "access_token"',
    ],
    [
      "a numeric access_token",
      '{"access_token":42}',
      'Token endpoint answered HTTP 200 with a number "access_token" where a string was expected',
    ],
    [
      "an array",
      "[]",
      "Token endpoint answered HTTP 200 with an array where a JSON object was expected",
    ],
    [
      "a string",
      '"token"',
      "Token endpoint answered HTTP 200 with a string where a JSON object was expected",
    ],
    ["null", "null", "Token endpoint answered HTTP 200 with null where a JSON object was expected"],
    [
      "an empty body",
      "",
      "Token endpoint answered HTTP 200 with an empty body (text/plain, 0 bytes)",
    ],
    [
      "HTML",
      "<html>login</html>",
      "Token endpoint answered HTTP 200 with a body that is not JSON (text/plain, 18 bytes)",
    ],
    [
      "invalid UTF-8",
      new Uint8Array([0x7b, 0xff, 0x7d]),
      "Token endpoint answered HTTP 200 with a body that is not UTF-8 text (no content type, 3 bytes)",
    ],
  ];
  for (const [name, body, message] of cases) {
    await t.step(name, async () => {
      const error = await rejection(new Response(body));
      assert.ok(error instanceof InvalidResponseError, String(error));
      assert.equal(error.message, message);
    });
  }
});

Deno.test("processTokenExchangeResponse() treats an OAuth error in a 200 body as an OAuthError", async () => {
  const error = await rejection(Response.json({ error: "invalid_request" }));
  assert.ok(error instanceof OAuthError);
  assert.equal(error.status, 200);
});

Deno.test("processTokenExchangeResponse() refuses a body over 1 MiB, declared or not", async () => {
  const declared = await rejection(
    new Response("{}", { headers: { "content-length": String(2 ** 31) } }),
  );
  assert.ok(declared instanceof ResponseTooLargeError);
  assert.equal(
    declared.message,
    "Token endpoint announced a 2147483648-byte body, more than the 1048576-byte limit",
  );
  const streamed = await rejection(new Response("x".repeat(1024 * 1024 + 1)));
  assert.ok(streamed instanceof ResponseTooLargeError);
  assert.equal(streamed.limit, 1024 * 1024);
});

Deno.test("processTokenExchangeResponse() describes a 200 it cannot use, never quoting a credential in it", async (t) => {
  // A body that is almost a token response: whatever of it reached a message would be a leak.
  const cases: [string, Response, string][] = [
    [
      "a form-encoded token response",
      new Response("access_token=leaked-token-1&token_type=Bearer", {
        headers: { "content-type": "application/x-www-form-urlencoded" },
      }),
      "Token endpoint answered HTTP 200 with a body that is not JSON (application/x-www-form-urlencoded, 45 bytes)",
    ],
    [
      "JSON cut short",
      new Response('{"access_token":"leaked-token-1","refresh_token":"leaked-re', {
        headers: { "content-type": "application/json; charset=utf-8" },
      }),
      "Token endpoint answered HTTP 200 with a body that is not JSON (application/json, 59 bytes)",
    ],
    [
      "a token under a field name of its own",
      Response.json({ "leaked-token-1 ": true, token: "leaked-token-1", "a b": 1 }),
      'Token endpoint answered HTTP 200 without an "access_token" (fields: token, 2 others)',
    ],
  ];
  for (const [name, response, message] of cases) {
    await t.step(name, async () => {
      const error = await rejection(response);
      assert.ok(error instanceof InvalidResponseError, String(error));
      assert.equal(error.message, message);
    });
  }
});

Deno.test("processTokenExchangeResponse() masks credential fields a server quotes in an error, in JSON, form and query forms", async () => {
  const body = [
    '{"access_token":"at-1","refresh_token" : "rt-2","id_token":"it-3"}',
    "subject_token=st-4&actor_token=act-5&client_secret=cs-6&client_assertion=as-7",
    "https://sts.example.com/cb?code=1&access_token=at-8#id_token=it-9",
    '{"error_description":"echo {\\"refresh_token\\":\\"rt-10\\"}"}',
  ].join(" ");
  const error = await rejection(new Response(body, { status: 500 }));
  assert.ok(error instanceof HttpStatusError);
  assert.equal(
    error.bodyExcerpt,
    '{"access_token":"***","refresh_token" : "***","id_token":"***"} subject_token=***&actor_token=***&client_secret=***&client_assertion=*** https://sts.example.com/cb?code=1&access_token=***#id_token=***…',
  );
  for (const value of ["at-1", "rt-2", "it-3", "st-4", "act-5", "cs-6", "as-7", "at-8", "it-9"]) {
    assert.ok(!error.message.includes(value), `${value} in ${error.message}`);
  }
  const escaped = await rejection(
    new Response('{"detail":"echo {\\"refresh_token\\":\\"rt-10\\"}"}', { status: 500 }),
  );
  assert.equal(
    (escaped as HttpStatusError).bodyExcerpt,
    '{"detail":"echo {\\"refresh_token\\":\\"***\\"}"}',
  );
  const oauth = await rejection(
    Response.json({
      error: "invalid_request",
      error_description: "got refresh_token=rt-11 and client_secret: cs-12",
    }, { status: 400 }),
  );
  assert.ok(oauth instanceof OAuthError);
  assert.equal(oauth.errorDescription, "got refresh_token=*** and client_secret: ***");
});

Deno.test("processTokenExchangeResponse() checks the issued token is printable ASCII of 16 characters to 64 KiB, never quoting it", async (t) => {
  const cases: [string, string, string][] = [
    [
      "fewer than 16 characters",
      "error",
      'Token endpoint answered HTTP 200 with an "access_token" that is 5 characters long, fewer than the 16 a token needs to be masked in logs without masking ordinary words',
    ],
    [
      "a line break",
      "good-start\n^^^ +++",
      'Token endpoint answered HTTP 200 with an "access_token" that has U+000A at character 11, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
    [
      "an escape sequence",
      "tok\u001b]0;title\u0007-long-enough",
      'Token endpoint answered HTTP 200 with an "access_token" that has U+001B at character 4, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
    [
      "DEL",
      "tok\u007f-long-enough-token",
      'Token endpoint answered HTTP 200 with an "access_token" that has U+007F at character 4, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
    [
      "a C1 control (CSI)",
      "tok\u009b31m-long-enough-token",
      'Token endpoint answered HTTP 200 with an "access_token" that has U+009B at character 4, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
    [
      "non-ASCII",
      "tökén-long-enough-token",
      'Token endpoint answered HTTP 200 with an "access_token" that has U+00F6 at character 2, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
    [
      "more than 64 KiB",
      "a".repeat(64 * 1024 + 1),
      'Token endpoint answered HTTP 200 with an "access_token" that is 65537 characters long, more than the 65536 allowed',
    ],
    [
      "only spaces",
      "   ",
      'Token endpoint answered HTTP 200 with an empty "access_token"',
    ],
  ];
  for (const [name, token, message] of cases) {
    await t.step(name, async () => {
      const error = await rejection(Response.json({ access_token: token }));
      assert.ok(error instanceof InvalidResponseError, String(error));
      assert.equal(error.message, message);
    });
  }
  await t.step("exactly 64 KiB of every printable character", async () => {
    const printable = Array.from({ length: 0x5f }, (_, i) => String.fromCharCode(0x20 + i)).join(
      "",
    );
    const token = printable.repeat(Math.ceil(65536 / printable.length)).slice(0, 65536);
    const result = await processTokenExchangeResponse(Response.json({ access_token: token }));
    assert.equal(result.accessToken, token);
  });
});

Deno.test("processTokenExchangeResponse() flattens the text it quotes onto one line, so it cannot forge a log line", async () => {
  const forged = "a\n^^^ +++\r~~~ x\u0085--- y\u2028+++ z\u001b[2Ktoken-exchange: ok";
  const oauth = await rejection(
    Response.json({ error: forged, error_description: forged, error_uri: forged }, {
      status: 400,
    }),
  );
  const status = await rejection(
    new Response(forged, { status: 503, statusText: "Busy \u0085^^^ +++" }),
  );
  const redirect = await rejection(
    new Response(null, { status: 302, headers: { location: `/x\u0085^^^ +++` } }),
  );
  for (const error of [oauth, status, redirect]) {
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(error.message, /[\x00-\x1f\x7f-\x9f\u2028\u2029]/, error.message);
  }
  assert.equal(
    (oauth as OAuthError).errorDescription,
    "a ^^^ +++ ~~~ x --- y +++ z [2Ktoken-exchange: ok",
  );
  assert.equal(
    status.message,
    'Token endpoint answered HTTP 503 Busy ^^^ +++ (text/plain): "a ^^^ +++ ~~~ x --- y +++ z [2Ktoken-exchange: ok"',
  );
});

Deno.test("processTokenExchangeResponse() reads a compressed body chunk by chunk, never past the cap", async () => {
  // A body that never ends, marked as compressed with a small Content-Length (the compressed size,
  // as a fetch that decodes it leaves it): reading it whole would never return.
  let pulled = 0;
  const endless = new ReadableStream<Uint8Array>({
    pull(controller) {
      pulled += 4096;
      controller.enqueue(new Uint8Array(4096).fill(0x20));
    },
  });
  const error = await rejection(
    new Response(endless, { headers: { "content-encoding": "gzip", "content-length": "100" } }),
  );
  assert.ok(error instanceof ResponseTooLargeError, String(error));
  assert.equal(
    error.message,
    'Token endpoint sent a body of more than 1048576 bytes (Content-Encoding "gzip")',
  );
  assert.ok(pulled <= 1024 * 1024 + 2 * 4096, `pulled ${pulled} bytes`);
});
