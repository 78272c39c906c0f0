import assert from "node:assert/strict";
import {
  HttpStatusError,
  NetworkError,
  OAuthError,
  RedirectError,
  ResponseTooLargeError,
  TimeoutError,
} from "./_errors.ts";
import { exchange, exchangeToken, type ExchangeTokenOptions } from "./_exchange.ts";
import { oauthError, startTokenEndpoint, tokenResponse } from "./tests/_token_endpoint.ts";
import { CLIENT_SECRET, SUBJECT_TOKEN } from "./tests/_tokens.ts";
import { rejection } from "./tests/_rejection.ts";
import { VERSION } from "./_constants.ts";

/** Records the waits instead of waiting. */
function fakeTime() {
  const waits: number[] = [];
  return { waits, sleep: (ms: number) => (waits.push(ms), Promise.resolve()), random: () => 0.5 };
}

Deno.test("exchangeToken() POSTs exactly the RFC 8693 form and returns the issued token", async () => {
  await using server = startTokenEndpoint();
  const result = await exchangeToken({
    tokenEndpoint: server.url,
    subjectToken: SUBJECT_TOKEN,
    audience: "https://api.example.com",
    scope: "deploy",
    clientId: "ci",
    clientSecret: CLIENT_SECRET,
  });
  assert.equal(result.accessToken, "issued-access-token-0123456789");
  assert.equal(result.expiresIn, 3600);
  assert.equal(server.requests.length, 1);
  const [request] = server.requests;
  assert.equal(request!.method, "POST");
  assert.equal(request!.path, "/token");
  assert.deepEqual(request!.form, [
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", SUBJECT_TOKEN],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"],
    ["audience", "https://api.example.com"],
    ["scope", "deploy"],
  ]);
  assert.equal(request!.headers["content-type"], "application/x-www-form-urlencoded");
  assert.equal(request!.headers["accept"], "application/json");
  assert.equal(request!.headers["user-agent"], `token-exchange/${VERSION}`);
  const [id, secret] = atob(request!.headers["authorization"]!.slice("Basic ".length)).split(":");
  assert.deepEqual([
    decodeURIComponent(id!.replaceAll("+", " ")),
    decodeURIComponent(secret!.replaceAll("+", " ")),
  ], [
    "ci",
    CLIENT_SECRET,
  ]);
});

Deno.test("exchangeToken() never retries an OAuth 400 or 401", async (t) => {
  for (const status of [400, 401]) {
    await t.step(`HTTP ${status}`, async () => {
      await using server = startTokenEndpoint(() =>
        oauthError(status, { error: "invalid_client" })
      );
      const time = fakeTime();
      const error = await rejection(
        exchange({ tokenEndpoint: server.url, subjectToken: "s", ...time }),
      );
      assert.ok(error instanceof OAuthError);
      assert.equal(error.status, status);
      assert.equal(error.attempts, 1);
      assert.equal(server.requests.length, 1);
      assert.deepEqual(time.waits, []);
    });
  }
});

Deno.test("exchangeToken() retries 5xx and 429, honouring Retry-After, then succeeds", async () => {
  const answers = [
    () => new Response("busy", { status: 503, headers: { "retry-after": "2" } }),
    () =>
      new Response("slow down", {
        status: 429,
        headers: { "retry-after": "Thu, 26 Nov 2026 12:00:07 GMT" },
      }),
    () => new Response("oops", { status: 500 }),
    () => tokenResponse(),
  ];
  await using server = startTokenEndpoint((_, index) => answers[index]!());
  const time = fakeTime();
  const result = await exchange({
    tokenEndpoint: server.url,
    subjectToken: "s",
    ...time,
    now: () => Date.parse("2026-11-26T12:00:00Z"),
  });
  assert.equal(result.accessToken, "issued-access-token-0123456789");
  assert.equal(server.requests.length, 4);
  // Retry-After: 2 s, then the HTTP date 7 s ahead, then backoff (third retry: 2 s ceiling, jitter 0.5).
  assert.deepEqual(time.waits, [2000, 7000, 1500]);
  assert.ok(server.requests.every((request) => request.body === server.requests[0]!.body));
});

Deno.test("exchangeToken() stops after retries + 1 attempts and reports the last answer", async () => {
  await using server = startTokenEndpoint(() =>
    new Response("<h1>Service Unavailable</h1>", {
      status: 503,
      headers: { "content-type": "text/html" },
    })
  );
  const time = fakeTime();
  const error = await rejection(
    exchange({ tokenEndpoint: server.url, subjectToken: "s", retries: 2, ...time }),
  );
  assert.ok(error instanceof HttpStatusError);
  assert.equal(server.requests.length, 3);
  assert.deepEqual(time.waits, [375, 750]);
  assert.equal(
    error.message,
    'Token endpoint answered HTTP 503 Service Unavailable (text/html): "<h1>Service Unavailable</h1>" (after 3 attempts)',
  );
});

Deno.test("exchangeToken() caps a huge Retry-After at 30 s", async () => {
  await using server = startTokenEndpoint((_, index) =>
    index === 0
      ? new Response(null, { status: 503, headers: { "retry-after": "999999" } })
      : tokenResponse()
  );
  const time = fakeTime();
  await exchange({ tokenEndpoint: server.url, subjectToken: "s", ...time });
  assert.deepEqual(time.waits, [30_000]);
});

Deno.test("exchangeToken() refuses a redirect without resending the token", async () => {
  await using elsewhere = startTokenEndpoint();
  await using server = startTokenEndpoint(() =>
    new Response(null, { status: 302, headers: { location: elsewhere.url } })
  );
  const error = await rejection(
    exchangeToken({ tokenEndpoint: server.url, subjectToken: SUBJECT_TOKEN }),
  );
  assert.ok(error instanceof RedirectError);
  assert.equal(error.location, elsewhere.url);
  assert.equal(server.requests.length, 1);
  assert.equal(elsewhere.requests.length, 0);
});

Deno.test("exchangeToken() times out an endpoint that never answers, each attempt", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  await using server = startTokenEndpoint(async () => {
    await released;
    return tokenResponse();
  });
  const time = fakeTime();
  const error = await rejection(
    exchange({ tokenEndpoint: server.url, subjectToken: "s", timeout: 100, retries: 1, ...time }),
  );
  release();
  assert.ok(error instanceof TimeoutError);
  assert.equal(error.attempts, 2);
  assert.equal(error.timeout, 100);
  assert.equal(
    error.message,
    `Token endpoint "${server.url}" did not answer within 0.1 s (after 2 attempts)`,
  );
  assert.equal(server.requests.length, 2);
});

Deno.test("exchangeToken() times out a body that trickles forever", async () => {
  await using server = startTokenEndpoint(() => {
    let timer: ReturnType<typeof setInterval> | undefined;
    const body = new ReadableStream<Uint8Array>({
      start(controller) {
        controller.enqueue(new TextEncoder().encode('{"access_token":"'));
        timer = setInterval(() => controller.enqueue(new TextEncoder().encode("a")), 10);
      },
      cancel() {
        clearInterval(timer);
      },
    });
    return new Response(body, { headers: { "content-type": "application/json" } });
  });
  const started = performance.now();
  const error = await rejection(
    exchange({ tokenEndpoint: server.url, subjectToken: "s", timeout: 300, retries: 0 }),
  );
  assert.ok(error instanceof TimeoutError, String(error));
  assert.ok(performance.now() - started < 5000);
});

Deno.test("exchangeToken() retries a refused connection, then reports it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const time = fakeTime();
  const error = await rejection(
    exchange({
      tokenEndpoint: `http://127.0.0.1:${port}/token`,
      subjectToken: "s",
      retries: 2,
      ...time,
    }),
  );
  assert.ok(error instanceof NetworkError);
  assert.equal(error.attempts, 3);
  assert.equal(time.waits.length, 2);
  assert.match(
    error.message,
    new RegExp(
      `^Cannot reach token endpoint "http://127.0.0.1:${port}/token": .*Connection refused.*\\(after 3 attempts\\)$`,
    ),
  );
});

Deno.test("exchangeToken() names the reason fetch gives only as its cause", async () => {
  // Deno 2 and Node throw TypeError("fetch failed") and put what happened in `cause`.
  const fetchFailed = () =>
    Promise.reject(
      new TypeError("fetch failed", {
        cause: new Error("connect ECONNREFUSED 192.0.2.1:443", {
          cause: new Error("connect ECONNREFUSED 192.0.2.1:443"),
        }),
      }),
    );
  const error = await rejection(
    exchange({
      tokenEndpoint: "https://sts.example.com/token",
      subjectToken: "s",
      retries: 0,
      fetch: fetchFailed,
    }),
  );
  assert.ok(error instanceof NetworkError);
  assert.equal(
    error.message,
    'Cannot reach token endpoint "https://sts.example.com/token": connect ECONNREFUSED 192.0.2.1:443',
  );
});

Deno.test("exchangeToken() stops at once when the caller aborts, with the caller's reason", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  await using server = startTokenEndpoint(async () => {
    await released;
    return tokenResponse();
  });
  const controller = new AbortController();
  const pending = exchangeToken({
    tokenEndpoint: server.url,
    subjectToken: "s",
    signal: controller.signal,
  });
  setTimeout(() => controller.abort(new Error("cancelled by the build")), 50);
  const error = await rejection(pending);
  release();
  assert.equal(error.message, "cancelled by the build");
  assert.equal(server.requests.length, 1);
});

Deno.test("exchangeToken() refuses an oversized body without retrying", async () => {
  await using server = startTokenEndpoint(() => new Response("x".repeat(2 * 1024 * 1024)));
  const error = await rejection(exchangeToken({ tokenEndpoint: server.url, subjectToken: "s" }));
  assert.ok(error instanceof ResponseTooLargeError);
  assert.equal(server.requests.length, 1);
});

Deno.test("exchangeToken() checks its options before sending anything", async () => {
  await using server = startTokenEndpoint();
  const bad: Partial<ExchangeTokenOptions>[] = [{ timeout: 0 }, { timeout: Number.NaN }, {
    retries: -1,
  }, { retries: 1.5 }];
  for (const options of bad) {
    await assert.rejects(
      exchangeToken({ tokenEndpoint: server.url, subjectToken: "s", ...options }),
      TypeError,
    );
  }
  assert.equal(server.requests.length, 0);
});

Deno.test("exchangeToken() uses an injected fetch", async () => {
  const seen: string[] = [];
  const result = await exchangeToken({
    tokenEndpoint: "https://sts.example.com/token",
    subjectToken: "s",
    fetch: (input) => {
      seen.push(String(input));
      return Promise.resolve(tokenResponse({ access_token: "from-an-injected-fetch" }));
    },
  });
  assert.equal(result.accessToken, "from-an-injected-fetch");
  assert.deepEqual(seen, ["https://sts.example.com/token"]);
});

Deno.test("exchangeToken() reports each step through onDebug without a secret", async () => {
  await using server = startTokenEndpoint((_, index) =>
    index === 0 ? new Response(null, { status: 502 }) : tokenResponse()
  );
  const lines: string[] = [];
  await exchange({
    tokenEndpoint: server.url,
    subjectToken: SUBJECT_TOKEN,
    clientId: "ci",
    clientSecret: CLIENT_SECRET,
    onDebug: (line) => lines.push(line),
    ...fakeTime(),
  });
  assert.deepEqual(lines, [
    `Token endpoint: ${server.url}`,
    `Parameters: grant_type=urn:ietf:params:oauth:grant-type:token-exchange, subject_token=*** (${SUBJECT_TOKEN.length} characters), subject_token_type=urn:ietf:params:oauth:token-type:jwt`,
    'Client authentication: HTTP Basic as "ci" (secret ***)',
    `POST ${server.url} (attempt 1 of 4)`,
    "Token endpoint answered HTTP 502 Bad Gateway",
    "HTTP 502; retrying in 0.375 s",
    `POST ${server.url} (attempt 2 of 4)`,
    "Token endpoint answered HTTP 200 OK",
  ]);
});

Deno.test("exchangeToken() masks every secret an error page echoes: form-encoded, or as Basic credentials", async (t) => {
  // A proxy's error page that shows what it refused: the credentials, from the header or the body.
  await using server = startTokenEndpoint((request) =>
    new Response(
      `<pre>Authorization: ${request.headers["authorization"]}\n${new URLSearchParams(
        request.form.filter(([name]) => name.startsWith("client_")),
      )}</pre>`,
      { status: 400, headers: { "content-type": "text/html" } },
    )
  );
  const secret = "s3cr:et%2F@/+ pass word";
  for (const clientAuth of ["basic", "post"] as const) {
    await t.step(clientAuth, async () => {
      const error = await rejection(exchangeToken({
        tokenEndpoint: server.url,
        subjectToken: "opaque-subject-token-0123456789",
        clientId: "ci",
        clientSecret: secret,
        clientAuth,
      }));
      assert.ok(error instanceof HttpStatusError);
      const request = server.requests.at(-1)!;
      const leaks = [
        secret,
        new URLSearchParams([["", secret]]).toString().slice(1),
        request.headers["authorization"]?.slice("Basic ".length),
        "opaque-subject-token-0123456789",
      ].filter((leak) => leak !== undefined && error.message.includes(leak));
      assert.deepEqual(leaks, [], error.message);
      assert.match(
        error.message,
        /^Token endpoint answered HTTP 400 Bad Request \(text\/html\): "<pre>Authorization: /,
      );
    });
  }
});
