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

const SECRET = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";

/** The error processing the response throws, with SECRET as a known secret. */
function rejection(response: Response): Promise<Error> {
  return rejected(processTokenExchangeResponse(response, { secrets: [SECRET] }));
}

Deno.test("processTokenExchangeResponse() returns every field of a full response", async () => {
  const raw = {
    access_token: "at",
    issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
    token_type: "Bearer",
    expires_in: 3600,
    scope: "read write",
    refresh_token: "rt",
    extra: true,
  };
  assert.deepEqual(await processTokenExchangeResponse(Response.json(raw)), {
    accessToken: "at",
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
    new Response('{"access_token":"at"}', { headers: { "content-type": "text/plain" } }),
    { onDebug: (line) => lines.push(line) },
  );
  assert.equal(result.accessToken, "at");
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
    Response.json({ access_token: "at", expires_in: "120" }),
  );
  assert.equal(numeric.expiresIn, 120);
  const nonsense = await processTokenExchangeResponse(
    Response.json({ access_token: "at", expires_in: "soon" }),
  );
  assert.equal(nonsense.expiresIn, undefined);
});

Deno.test("processTokenExchangeResponse() accepts a UTF-8 byte order mark", async () => {
  const body = new Uint8Array([
    0xef,
    0xbb,
    0xbf,
    ...new TextEncoder().encode('{"access_token":"at"}'),
  ]);
  assert.equal((await processTokenExchangeResponse(new Response(body))).accessToken, "at");
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
  const error = await rejection(Response.json({ access_token: "at" }, { status: 201 }));
  assert.ok(error instanceof InvalidResponseError);
  assert.equal(
    error.message,
    "Token endpoint answered HTTP 201, but a token response must be HTTP 200 (RFC 6749 §5.1)",
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
      "Token endpoint answered HTTP 200 with a body that is not JSON (text/plain): the body is empty",
    ],
    [
      "HTML",
      "<html>login</html>",
      'Token endpoint answered HTTP 200 with a body that is not JSON (text/plain): "<html>login</html>"',
    ],
    [
      "invalid UTF-8",
      new Uint8Array([0x7b, 0xff, 0x7d]),
      "Token endpoint answered HTTP 200 with a body that is not UTF-8 text",
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
