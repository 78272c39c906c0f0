import assert from "node:assert/strict";
import { discover, discoverTokenEndpoint } from "./_discovery.ts";
import { DiscoveryError, TimeoutError } from "./_errors.ts";
import { runBudget } from "./_http.ts";
import { rejection } from "./tests/_rejection.ts";
import { startTokenEndpoint } from "./tests/_token_endpoint.ts";

const notFound = () => new Response("not found", { status: 404 });

Deno.test("discoverTokenEndpoint() reads OpenID Connect discovery first", async () => {
  await using server = startTokenEndpoint((request) =>
    request.path === "/.well-known/openid-configuration"
      ? Response.json({ issuer: server.origin, token_endpoint: `${server.origin}/oauth2/token` })
      : notFound()
  );
  const endpoint = await discoverTokenEndpoint(server.origin);
  assert.equal(endpoint.href, `${server.origin}/oauth2/token`);
  assert.deepEqual(server.requests.map((r) => [r.method, r.path, r.headers["accept"]]), [
    ["GET", "/.well-known/openid-configuration", "application/json"],
  ]);
});

Deno.test("discoverTokenEndpoint() falls back to RFC 8414 metadata, inserting the issuer's path", async () => {
  await using server = startTokenEndpoint((request) =>
    request.path === "/.well-known/oauth-authorization-server/realms/ci"
      ? Response.json({
        issuer: `${server.origin}/realms/ci`,
        token_endpoint: `${server.origin}/realms/ci/token`,
      })
      : notFound()
  );
  const endpoint = await discoverTokenEndpoint(`${server.origin}/realms/ci/`);
  assert.equal(endpoint.href, `${server.origin}/realms/ci/token`);
  assert.deepEqual(server.requests.map((r) => r.path), [
    "/realms/ci/.well-known/openid-configuration",
    "/.well-known/oauth-authorization-server/realms/ci",
  ]);
});

Deno.test("discoverTokenEndpoint() follows a redirect to another https-or-loopback URL", async () => {
  await using server = startTokenEndpoint((request) =>
    request.path === "/.well-known/openid-configuration"
      ? new Response(null, { status: 301, headers: { location: "/moved/openid-configuration" } })
      : Response.json({ issuer: server.origin, token_endpoint: `${server.origin}/token` })
  );
  assert.equal((await discoverTokenEndpoint(server.origin)).href, `${server.origin}/token`);
  assert.deepEqual(server.requests.map((r) => r.path), [
    "/.well-known/openid-configuration",
    "/moved/openid-configuration",
  ]);
});

Deno.test("discoverTokenEndpoint() refuses what it cannot trust, with a DiscoveryError that says why", async (t) => {
  const cases: [string, (origin: string) => Response, RegExp][] = [
    [
      "an issuer that does not match",
      () =>
        Response.json({
          issuer: "https://evil.example.com",
          token_endpoint: "https://evil.example.com/t",
        }),
      /names issuer "https:\/\/evil.example.com", not "http:\/\/127.0.0.1:\d+"/,
    ],
    [
      "a plain-http token endpoint",
      (origin) => Response.json({ issuer: origin, token_endpoint: "http://sts.example.com/token" }),
      /Discovered token endpoint "http:\/\/sts.example.com\/token" must use https/,
    ],
    [
      "no issuer in the metadata",
      (origin) => Response.json({ token_endpoint: `${origin}/token` }),
      /has no "issuer" \(RFC 8414 §3.3 requires it to match\): set token-endpoint instead of issuer$/,
    ],
    [
      "a token endpoint on another host",
      (origin) =>
        Response.json({ issuer: origin, token_endpoint: "https://sts.example.com/token" }),
      /^The discovered token endpoint "https:\/\/sts.example.com\/token" is not on the issuer's host "127.0.0.1:\d+", and this run may reach only that: set token-endpoint to it instead of issuer$/,
    ],
    [
      "a token endpoint on another port of the issuer's host",
      (origin) => Response.json({ issuer: origin, token_endpoint: "http://127.0.0.1:1/token" }),
      /is not on the issuer's host "127.0.0.1:\d+"/,
    ],
    [
      "no token endpoint",
      (origin) => Response.json({ issuer: origin }),
      /has no "token_endpoint": set token-endpoint instead of issuer/,
    ],
    [
      "a redirect to plain http",
      () => new Response(null, { status: 302, headers: { location: "http://example.com/x" } }),
      /Redirect "http:\/\/example.com\/x" must use https/,
    ],
    [
      "no metadata at all",
      notFound,
      /Cannot discover the token endpoint of issuer "http:\/\/127.0.0.1:\d+" \(.*openid-configuration: HTTP 404; .*oauth-authorization-server: HTTP 404\): check the issuer URL or set token-endpoint instead/,
    ],
    [
      "metadata that is not JSON",
      () => new Response("<html>"),
      /HTTP 200 with a body that is not JSON/,
    ],
  ];
  for (const [name, answer, message] of cases) {
    await t.step(name, async () => {
      await using server = startTokenEndpoint(() => answer(server.origin));
      await assert.rejects(discoverTokenEndpoint(server.origin, { retries: 0 }), (error: Error) => {
        assert.ok(error instanceof DiscoveryError, String(error));
        assert.match(error.message, message);
        return true;
      });
    });
  }
});

Deno.test("discover() names the caller's options in its advice, as the CLI's flags for one", async () => {
  const metadata = {
    issuer: "https://dex.example.com",
    token_endpoint: "https://sts.example.com/t",
  };
  await assert.rejects(
    discover("https://dex.example.com", {
      fetch: metadataFetch(metadata),
      names: { tokenEndpoint: "--token-endpoint", issuer: "--issuer" },
    }),
    new DiscoveryError(
      'The discovered token endpoint "https://sts.example.com/t" is not on the issuer\'s host "dex.example.com", and this run may reach only that: set --token-endpoint to it instead of --issuer',
    ),
  );
  await assert.rejects(
    discover("https://dex.example.com", { fetch: metadataFetch({ ...metadata, issuer: 1 }) }),
    new DiscoveryError(
      'Issuer metadata at https://dex.example.com/.well-known/openid-configuration has no "issuer" (RFC 8414 §3.3 requires it to match): set token-endpoint instead of issuer',
    ),
  );
});

Deno.test("discoverTokenEndpoint() refuses an insecure or malformed issuer before any request", async () => {
  await assert.rejects(discoverTokenEndpoint("http://issuer.example.com"), TypeError);
  await assert.rejects(discoverTokenEndpoint("https://issuer.example.com?x=1"), TypeError);
  await assert.rejects(discoverTokenEndpoint("issuer.example.com"), TypeError);
});

/** A fetch that serves one metadata document for any URL, recording what it was asked for. */
function metadataFetch(metadata: Record<string, unknown>, asked: string[] = []): typeof fetch {
  return (input) => {
    asked.push(String(input));
    return Promise.resolve(Response.json(metadata));
  };
}

Deno.test("discoverTokenEndpoint() refuses an https issuer's metadata that downgrades the token endpoint to http", async () => {
  const issuer = "https://localhost:8443";
  const error = await rejection(
    discoverTokenEndpoint(issuer, {
      retries: 0,
      fetch: metadataFetch({ issuer, token_endpoint: "http://localhost:8443/token" }),
    }),
  );
  assert.ok(error instanceof DiscoveryError, String(error));
  assert.equal(
    error.message,
    'The discovered token endpoint "http://localhost:8443/token" is plain http under an https issuer: set token-endpoint to an https URL instead of issuer',
  );
  // The same host over https is what the rule allows.
  const endpoint = await discoverTokenEndpoint(issuer, {
    fetch: metadataFetch({ issuer: `${issuer}/`, token_endpoint: "https://localhost:8443/token" }),
  });
  assert.equal(endpoint.href, "https://localhost:8443/token");
});

Deno.test("discoverTokenEndpoint() accepts the issuer's host written with its default port or in capitals", async () => {
  const endpoint = await discoverTokenEndpoint("https://Issuer.Example.com", {
    fetch: metadataFetch({
      issuer: "https://issuer.example.com",
      token_endpoint: "https://ISSUER.example.com:443/oauth2/token",
    }),
  });
  assert.equal(endpoint.href, "https://issuer.example.com/oauth2/token");
});

Deno.test("discoverTokenEndpoint() flattens and masks what the metadata says before it reaches a message or debug line", async () => {
  const issuer = "https://issuer.example.com";
  const lines: string[] = [];
  const error = await rejection(
    discoverTokenEndpoint(issuer, {
      fetch: metadataFetch({
        issuer: `${issuer}\n^^^ +++ token-exchange: access_token=leaked \u0085~~~`,
        token_endpoint: `${issuer}/token`,
      }),
      onDebug: (line) => lines.push(line),
    }),
  );
  assert.ok(error instanceof DiscoveryError);
  assert.equal(
    error.message,
    'Issuer metadata at https://issuer.example.com/.well-known/openid-configuration names issuer "https://issuer.example.com ^^^ +++ token-exchange: access_token=*** ~~~", not "https://issuer.example.com": set the issuer to exactly what its tokens say, or set token-endpoint instead',
  );
  const bad = await rejection(
    discoverTokenEndpoint(issuer, {
      fetch: metadataFetch({ issuer, token_endpoint: "http://sts.example.com/\n^^^ +++" }),
    }),
  );
  assert.equal(
    bad.message,
    'Discovered token endpoint "http://sts.example.com/ ^^^ +++" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1]); set token-endpoint instead of issuer',
  );
});

/**
 * A hostile issuer on a virtual clock: every metadata URL answers 503 with `Retry-After: 30` three
 * times, then redirects to another path that does the same, without end. Each request takes 200 ms.
 */
function hostileIssuer() {
  let clock = 0;
  const seen = new Map<string, number>();
  const requests: number[] = [];
  const fetch: typeof globalThis.fetch = (input) => {
    const url = new URL(String(input instanceof Request ? input.url : input));
    clock += 200;
    requests.push(clock);
    const count = (seen.get(url.href) ?? 0) + 1;
    seen.set(url.href, count);
    return Promise.resolve(
      count <= 3
        ? new Response("busy", { status: 503, headers: { "retry-after": "30" } })
        : new Response(null, { status: 307, headers: { location: `${url.pathname}/next` } }),
    );
  };
  const sleep = (ms: number) => {
    clock += ms;
    return Promise.resolve();
  };
  return { fetch, sleep, now: () => clock, requests, elapsed: () => clock };
}

Deno.test("discover() gives up at the run's deadline, whatever a hostile issuer does", async () => {
  // Without a deadline, the same issuer holds a run for 2 URLs × 6 hops × 3 waits of 30 s: 18 min.
  const unbounded = hostileIssuer();
  const failure = await rejection(
    discover("https://issuer.example.com", { ...unbounded, random: () => 0.5 }),
  );
  assert.ok(failure instanceof DiscoveryError, String(failure));
  assert.equal(Math.round(unbounded.elapsed() / 60_000), 18);
  // The CLI's deadline: (retries + 1) × timeout + 30 s, for every request and wait of the run.
  const hostile = hostileIssuer();
  const budget = runBudget(10_000, 3);
  const error = await rejection(
    discover("https://issuer.example.com", {
      ...hostile,
      random: () => 0.5,
      timeout: 10_000,
      retries: 3,
      deadline: { at: budget, ms: budget },
    }),
  );
  assert.ok(error instanceof TimeoutError, String(error));
  assert.equal(
    error.message,
    'Issuer "https://issuer.example.com/.well-known/openid-configuration" kept this run waiting past its deadline, (retries + 1) × timeout + 30 s = 70 s for every request and wait of the run (after 3 attempts)',
  );
  assert.ok(hostile.elapsed() <= budget, `${hostile.elapsed()} ms`);
  assert.equal(budget, 70_000);
});

Deno.test("discover() hands over the metadata's revocation_endpoint only when it is on the issuer's host", async () => {
  let revocation = "";
  await using server = startTokenEndpoint(() =>
    Response.json({
      issuer: server.origin,
      token_endpoint: `${server.origin}/token`,
      revocation_endpoint: revocation,
    })
  );
  const found = async (named: string) => {
    revocation = named;
    let url: URL | undefined;
    await discover(server.origin, { onRevocationEndpoint: (u) => (url = u) });
    return url?.href;
  };
  assert.equal(await found(`${server.origin}/revoke`), `${server.origin}/revoke`);
  assert.equal(await found("https://elsewhere.example.com/revoke"), undefined);
  assert.equal(await found("not a url"), undefined);
});
