import assert from "node:assert/strict";
import { buildTokenExchangeRequest, formEncode } from "./_request.ts";
import { VERSION } from "./_constants.ts";

const endpoint = "https://sts.example.com/v1/token";

Deno.test("buildTokenExchangeRequest() sends only the required parameters by default", () => {
  const request = buildTokenExchangeRequest({ tokenEndpoint: endpoint, subjectToken: "subject" });
  assert.equal(request.url.href, endpoint);
  assert.deepEqual([...request.body], [
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", "subject"],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"],
  ]);
  assert.deepEqual(Object.fromEntries(request.headers), {
    accept: "application/json",
    "content-type": "application/x-www-form-urlencoded",
    "user-agent": `token-exchange/${VERSION}`,
  });
});

Deno.test("buildTokenExchangeRequest() sends every optional RFC 8693 parameter that is set", () => {
  const request = buildTokenExchangeRequest({
    tokenEndpoint: endpoint,
    subjectToken: "subject",
    subjectTokenType: "urn:ietf:params:oauth:token-type:id_token",
    actorToken: "actor",
    actorTokenType: "urn:ietf:params:oauth:token-type:access_token",
    audience: ["first", "second"],
    resource: ["https://api.example.com/a", "urn:example:b"],
    scope: ["read", "write admin"],
    requestedTokenType: "urn:ietf:params:oauth:token-type:access_token",
  });
  assert.deepEqual([...request.body], [
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", "subject"],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:id_token"],
    ["actor_token", "actor"],
    ["actor_token_type", "urn:ietf:params:oauth:token-type:access_token"],
    ["audience", "first"],
    ["audience", "second"],
    ["resource", "https://api.example.com/a"],
    ["resource", "urn:example:b"],
    ["scope", "read write admin"],
    ["requested_token_type", "urn:ietf:params:oauth:token-type:access_token"],
  ]);
});

Deno.test("buildTokenExchangeRequest() form-encodes Basic credentials per RFC 6749 §2.3.1", () => {
  const request = buildTokenExchangeRequest({
    tokenEndpoint: endpoint,
    subjectToken: "subject",
    clientId: "ci client:1",
    clientSecret: "p@ss:w%rd/ x+",
  });
  assert.equal(
    request.headers.get("authorization"),
    `Basic ${btoa("ci+client%3A1:p%40ss%3Aw%25rd%2F+x%2B")}`,
  );
  assert.equal(request.body.has("client_id"), false);
  assert.equal(request.body.has("client_secret"), false);
});

Deno.test("buildTokenExchangeRequest() puts the client credentials in the body for post", () => {
  const request = buildTokenExchangeRequest({
    tokenEndpoint: endpoint,
    subjectToken: "subject",
    clientId: "client",
    clientSecret: "p@ss:w%rd/ x",
    clientAuth: "post",
  });
  assert.equal(request.headers.has("authorization"), false);
  assert.equal(request.body.get("client_id"), "client");
  assert.equal(request.body.get("client_secret"), "p@ss:w%rd/ x");
});

Deno.test("buildTokenExchangeRequest() sends client_id alone for a public client", () => {
  const request = buildTokenExchangeRequest({
    tokenEndpoint: endpoint,
    subjectToken: "subject",
    clientId: "public-client",
  });
  assert.equal(request.headers.has("authorization"), false);
  assert.equal(request.body.get("client_id"), "public-client");
  assert.equal(request.body.has("client_secret"), false);
});

Deno.test("buildTokenExchangeRequest() refuses bad arguments with a TypeError", async (t) => {
  const cases: [string, Record<string, unknown>, RegExp][] = [
    ["a plain-http endpoint", { tokenEndpoint: "http://sts.example.com/token" }, /must use https/],
    ["a relative endpoint", { tokenEndpoint: "/token" }, /not an absolute URL/],
    [
      "credentials in the URL",
      { tokenEndpoint: "https://u:p@sts.example.com/" },
      /must not contain credentials/,
    ],
    [
      "a fragment",
      { tokenEndpoint: "https://sts.example.com/token#x" },
      /must not have a fragment/,
    ],
    ["an empty subject token", { subjectToken: "" }, /subjectToken/],
    ["an empty subject token type", { subjectTokenType: " " }, /subjectTokenType/],
    ["an actor token without its type", { actorToken: "a" }, /actorTokenType/],
    ["an actor token type alone", { actorTokenType: "t" }, /without actorToken/],
    ["a relative resource", { resource: "api" }, /absolute URI/],
    [
      "a resource with a fragment",
      { resource: "https://api.example.com/#f" },
      /without a fragment/,
    ],
    ["an empty audience", { audience: [""] }, /audience/],
    ["a secret without a client", { clientSecret: "s" }, /without clientId/],
    ["an empty secret", { clientId: "c", clientSecret: "" }, /empty clientSecret/],
    [
      "an unknown client auth",
      { clientId: "c", clientSecret: "s", clientAuth: "jwt" },
      /"basic", "post" or "assertion"/,
    ],
    ["an unknown grant type", { grantType: "password" }, /grantType "password": it must be/],
    [
      "an assertion without a client ID",
      { clientAuth: "assertion" },
      /clientAuth "assertion" without clientId/,
    ],
    [
      "an assertion and a secret",
      { clientId: "c", clientSecret: "s", clientAuth: "assertion" },
      /Cannot use clientSecret with clientAuth "assertion"/,
    ],
    [
      "client credentials without client authentication",
      { grantType: "client-credentials", clientId: "c" },
      /grantType "client-credentials" without client authentication/,
    ],
    [
      "an RFC 8693 parameter with another grant",
      { grantType: "jwt-bearer", audience: "api" },
      /Cannot use audience with grantType "jwt-bearer": it is a parameter of RFC 8693 token exchange/,
    ],
    ["an empty requested type", { requestedTokenType: "" }, /requestedTokenType/],
  ];
  for (const [name, override, message] of cases) {
    await t.step(name, () => {
      assert.throws(
        () =>
          buildTokenExchangeRequest(
            { tokenEndpoint: endpoint, subjectToken: "s", ...override } as never,
          ),
        (error: Error) => error instanceof TypeError && message.test(error.message),
      );
    });
  }
});

Deno.test("buildTokenExchangeRequest() allows plain http only to loopback", () => {
  for (
    const url of [
      "http://localhost:8080/t",
      "http://127.0.0.1/t",
      "http://127.9.8.7/t",
      "http://[::1]:1/t",
    ]
  ) {
    assert.equal(
      buildTokenExchangeRequest({ tokenEndpoint: url, subjectToken: "s" }).url.protocol,
      "http:",
    );
  }
  for (const url of ["http://128.0.0.1/t", "http://localhost.example.com/t", "http://10.0.0.1/t"]) {
    assert.throws(
      () => buildTokenExchangeRequest({ tokenEndpoint: url, subjectToken: "s" }),
      TypeError,
    );
  }
});

Deno.test("formEncode() uses the form serializer, not encodeURIComponent", () => {
  assert.equal(formEncode("a b:c%d@e/f+g~h*i"), "a+b%3Ac%25d%40e%2Ff%2Bg%7Eh*i");
});

Deno.test("VERSION, and so the User-Agent, is the version deno.json publishes", async () => {
  const { default: denoJson } = await import("./deno.json", { with: { type: "json" } });
  assert.equal(VERSION, denoJson.version);
});

Deno.test("buildTokenExchangeRequest() sends extra parameters after the standard ones", () => {
  const request = buildTokenExchangeRequest({
    tokenEndpoint: endpoint,
    subjectToken: "subject",
    requestedTokenType: "urn:ietf:params:oauth:token-type:access_token",
    extraParameters: { connector_id: "buildkite", tag: ["a", "b"] },
    clientId: "public",
  });
  assert.deepEqual([...request.body].slice(3), [
    ["requested_token_type", "urn:ietf:params:oauth:token-type:access_token"],
    ["connector_id", "buildkite"],
    ["tag", "a"],
    ["tag", "b"],
    ["client_id", "public"],
  ]);
});

Deno.test("buildTokenExchangeRequest() refuses an extra parameter that would replace its own", () => {
  for (const name of ["grant_type", "subject_token", "audience", "scope", "client_secret", ""]) {
    assert.throws(
      () =>
        buildTokenExchangeRequest({
          tokenEndpoint: endpoint,
          subjectToken: "subject",
          extraParameters: { [name]: "x" },
        }),
      (error: Error) =>
        error instanceof TypeError &&
        error.message.startsWith(`Cannot send "${name}" as an extra parameter`),
      name,
    );
  }
});

Deno.test("buildTokenExchangeRequest() makes RFC 7523's grant and client assertion, and client credentials", () => {
  const subjectToken = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJl";
  const base = { tokenEndpoint: "https://idp.example.com/token", subjectToken, scope: "deploy" };
  const form = (parameters: Parameters<typeof buildTokenExchangeRequest>[0]) => {
    const request = buildTokenExchangeRequest(parameters);
    return { body: [...request.body], authorization: request.headers.get("authorization") };
  };
  assert.deepEqual(form({ ...base, grantType: "jwt-bearer" }), {
    body: [
      ["grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
      ["assertion", subjectToken],
      ["scope", "deploy"],
    ],
    authorization: null,
  });
  const assertion = [
    ["client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
    ["client_assertion", subjectToken],
    ["client_id", "ci"],
  ];
  assert.deepEqual(
    form({ ...base, grantType: "client-credentials", clientId: "ci", clientAuth: "assertion" }),
    {
      body: [["grant_type", "client_credentials"], ["scope", "deploy"], ...assertion],
      authorization: null,
    },
  );
  // An assertion works with every grant: here a token exchange whose client is the job itself.
  assert.deepEqual(form({ ...base, clientId: "ci", clientAuth: "assertion" }).body, [
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", subjectToken],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"],
    ["scope", "deploy"],
    ...assertion,
  ]);
  // Client credentials with a secret send no subject token at all.
  assert.deepEqual(
    form({ ...base, grantType: "client-credentials", clientId: "ci", clientSecret: "s3cret" }),
    {
      body: [["grant_type", "client_credentials"], ["scope", "deploy"]],
      authorization: `Basic ${btoa("ci:s3cret")}`,
    },
  );
});
