import assert from "node:assert/strict";
import { discoverTokenEndpoint } from "./_discovery.ts";
import { DiscoveryError } from "./_errors.ts";
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
      "no token endpoint",
      (origin) => Response.json({ issuer: origin }),
      /has no "token_endpoint": set the token endpoint instead of the issuer/,
    ],
    [
      "a redirect to plain http",
      () => new Response(null, { status: 302, headers: { location: "http://example.com/x" } }),
      /Redirect "http:\/\/example.com\/x" must use https/,
    ],
    [
      "no metadata at all",
      notFound,
      /Cannot discover the token endpoint of issuer "http:\/\/127.0.0.1:\d+" \(.*openid-configuration: HTTP 404; .*oauth-authorization-server: HTTP 404\): check the issuer URL or set the token endpoint instead/,
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

Deno.test("discoverTokenEndpoint() refuses an insecure or malformed issuer before any request", async () => {
  await assert.rejects(discoverTokenEndpoint("http://issuer.example.com"), TypeError);
  await assert.rejects(discoverTokenEndpoint("https://issuer.example.com?x=1"), TypeError);
  await assert.rejects(discoverTokenEndpoint("issuer.example.com"), TypeError);
});
