// The client against a real token server: @jmondi/oauth2-server 4.3.7 and its TokenExchangeGrant on
// 127.0.0.1, verifying ES256 subject tokens against a JWKS with Web Crypto. Exchanges run through
// the library and, for a few, through cli.ts as a subprocess (checked for secrets by runCli()).
//
// Where that server departs from the RFCs, a test shows the departure on the wire, what the client
// does about it, and which setting makes it work (docs/recipes.md, "Servers that depart from the
// RFCs").

import assert from "node:assert/strict";
import { buildTokenExchangeRequest, decodeJwt, exchangeToken, OAuthError } from "../mod.ts";
import { runCli } from "./_cli.ts";
import {
  CLIENT_SECRETS,
  CLIENTS,
  type Oauth2Server,
  startOauth2Server,
  STS_AUDIENCE,
  STS_ISSUER,
  SUBJECT_ISSUER,
  subjectClaims,
} from "./_oauth2_server.ts";
import { createIssuer } from "./_signing.ts";
import { rejection } from "./_rejection.ts";
import { assertNoSecrets } from "./_tokens.ts";

const JWT = "urn:ietf:params:oauth:token-type:jwt";
const API = "https://api.example.com";

/** The fields of an OAuthError that say what went wrong. */
function describeOAuthError(error: Error) {
  assert.ok(error instanceof OAuthError, String(error));
  return {
    status: error.status,
    error: error.error,
    errorDescription: error.errorDescription,
    attempts: error.attempts,
    message: error.message,
  };
}

/** The tokens a server issued, for the secret checks. */
function issuedTokens(server: Oauth2Server): string[] {
  return server.responses.flatMap((response) =>
    typeof response.body.access_token === "string" ? [response.body.access_token] : []
  );
}

Deno.test("exchangeToken() gets a token from @jmondi/oauth2-server's TokenExchangeGrant for an audience and scopes", async () => {
  await using server = await startOauth2Server();
  const subjectToken = await server.subjectToken();
  const debug: string[] = [];
  const result = await exchangeToken({
    tokenEndpoint: server.url,
    subjectToken,
    audience: API,
    scope: ["deploy", "read"],
    clientId: CLIENTS.deployer.id,
    clientSecret: CLIENTS.deployer.secret,
    onDebug: (line) => debug.push(line),
  });
  // The server counts expires_in down from its own clock, so it is 3600 or, a second later, 3599.
  assert.ok(result.expiresIn === 3600 || result.expiresIn === 3599, String(result.expiresIn));
  assert.deepEqual({ ...result, raw: undefined }, {
    accessToken: server.responses[0]!.body.access_token,
    issuedTokenType: undefined,
    tokenType: "Bearer",
    expiresIn: result.expiresIn,
    scope: "deploy read",
    refreshToken: undefined,
    raw: undefined,
  });
  const claims = decodeJwt(result.accessToken)!.claims;
  const subject = server.exchanges[0]!.subject as Record<string, unknown>;
  assert.deepEqual(claims, {
    iss: STS_ISSUER,
    aud: API,
    cid: CLIENTS.deployer.id,
    scope: "deploy read",
    sub: subject.sub,
    exp: claims.exp,
    nbf: claims.nbf,
    iat: claims.iat,
    jti: claims.jti,
  });
  assert.deepEqual(server.exchanges, [{
    audience: API,
    resource: undefined,
    scopes: ["deploy", "read"],
    requestedTokenType: undefined,
    subjectTokenType: JWT,
    subject: {
      iss: SUBJECT_ISSUER,
      ...subjectClaims({ iat: subject.iat, nbf: subject.nbf, exp: subject.exp }),
    },
  }]);
  assertNoSecrets(debug.join("\n"), "debug lines", [], [
    subjectToken,
    ...CLIENT_SECRETS,
    result.accessToken,
  ]);
});

Deno.test("exchangeToken() authenticates to @jmondi/oauth2-server in each way the server reads", async (t) => {
  await using server = await startOauth2Server();
  const subjectToken = await server.subjectToken();
  const cases: [string, Parameters<typeof exchangeToken>[0]["clientAuth"], string, string?][] = [
    ["client_secret_basic", "basic", CLIENTS.deployer.id, CLIENTS.deployer.secret],
    ["client_secret_post", "post", CLIENTS.deployer.id, CLIENTS.deployer.secret],
    [
      "client_secret_post with a secret that has : and spaces",
      "post",
      CLIENTS.colon.id,
      CLIENTS.colon.secret,
    ],
    ["a public client (client_id only)", undefined, CLIENTS.public.id],
  ];
  for (const [name, clientAuth, clientId, clientSecret] of cases) {
    await t.step(name, async () => {
      const result = await exchangeToken({
        tokenEndpoint: server.url,
        subjectToken,
        clientId,
        clientSecret,
        clientAuth,
      });
      assert.deepEqual(
        { token: result.accessToken, cid: decodeJwt(result.accessToken)?.claims.cid },
        { token: server.responses.at(-1)!.body.access_token, cid: clientId },
      );
    });
  }
});

Deno.test("exchangeToken() reports @jmondi/oauth2-server's refusals as OAuthError, without retrying", async (t) => {
  await using server = await startOauth2Server();
  const good = await server.subjectToken();
  const otherKey = await createIssuer(SUBJECT_ISSUER);
  const [header, claims] = good.split(".");
  const forgedClaims = btoa(
    JSON.stringify({ ...JSON.parse(atob(claims!)), sub: "organization:evil" }),
  )
    .replaceAll("=", "");
  const cases: [
    string,
    Promise<string> | string,
    Partial<Parameters<typeof exchangeToken>[0]>,
    object,
  ][] = [
    [
      "invalid_client for a wrong secret",
      good,
      { clientId: CLIENTS.deployer.id, clientSecret: "not-the-secret" },
      {
        status: 401,
        error: "invalid_client",
        errorDescription: "Client has been revoked or is invalid.",
      },
    ],
    [
      "invalid_client for an unknown client",
      good,
      { clientId: "ci-unknown", clientSecret: "any-secret" },
      { status: 401, error: "invalid_client", errorDescription: "Client authentication failed" },
    ],
    [
      "invalid_client for a confidential client without its secret",
      good,
      { clientId: CLIENTS.deployer.id },
      {
        status: 401,
        error: "invalid_client",
        errorDescription: "Confidential clients require client_secret.",
      },
    ],
    [
      "invalid_scope for a scope it does not know",
      good,
      { clientId: CLIENTS.public.id, scope: "deploy admin" },
      { status: 400, error: "invalid_scope", errorDescription: "Check the `admin` scope(s)" },
    ],
    [
      "invalid_request for an expired subject token",
      server.subjectToken({ exp: 1_700_000_000 }),
      { clientId: CLIENTS.public.id },
      { status: 400, error: "invalid_request", errorDescription: "subject_token has expired" },
    ],
    [
      "invalid_request for a subject token for another audience",
      server.subjectToken({ aud: "https://other.example.com" }),
      { clientId: CLIENTS.public.id },
      {
        status: 400,
        error: "invalid_request",
        errorDescription: 'subject_token has aud "https://other.example.com"',
      },
    ],
    [
      "invalid_request for a subject token from another issuer",
      server.subjectToken({ iss: "https://token.actions.githubusercontent.com" }),
      { clientId: CLIENTS.public.id },
      {
        status: 400,
        error: "invalid_request",
        errorDescription: 'subject_token has iss "https://token.actions.githubusercontent.com"',
      },
    ],
    [
      "invalid_request for a subject token whose claims were changed after signing",
      `${header}.${forgedClaims}.${good.split(".")[2]}`,
      { clientId: CLIENTS.public.id },
      {
        status: 400,
        error: "invalid_request",
        errorDescription: "subject_token has a signature that does not verify",
      },
    ],
    [
      "invalid_request for a subject token signed by another key with the same kid",
      otherKey.sign(subjectClaims()),
      { clientId: CLIENTS.public.id },
      {
        status: 400,
        error: "invalid_request",
        errorDescription: "subject_token has a signature that does not verify",
      },
    ],
  ];
  for (const [name, token, options, expected] of cases) {
    await t.step(name, async () => {
      const subjectToken = await token;
      const before = server.responses.length;
      const error = await rejection(
        exchangeToken({ tokenEndpoint: server.url, subjectToken, ...options }),
      );
      const fields = expected as { status: number; error: string; errorDescription: string };
      assert.deepEqual(describeOAuthError(error), {
        ...fields,
        attempts: 1,
        message:
          `Token endpoint refused the exchange: HTTP ${fields.status}, error "${fields.error}": "${fields.errorDescription}"`,
      });
      assert.equal(server.responses.length, before + 1, "the request was sent exactly once");
      assertNoSecrets(error.message, name, [], [subjectToken, ...CLIENT_SECRETS]);
    });
  }
});

Deno.test("@jmondi/oauth2-server departs from the RFCs: what the client does, and the setting that works", async (t) => {
  await using server = await startOauth2Server();
  const subjectToken = await server.subjectToken();

  await t.step(
    "it sends no issued_token_type (RFC 8693 §2.2.1): the client takes the token and says so under debug",
    () => assertTakenWithoutIssuedTokenType(server, subjectToken),
  );

  await t.step(
    'it answers scope "" when no scope was asked for: the client passes it on as is',
    () => assertEmptyScopePassedOn(server, subjectToken),
  );

  await t.step(
    "it does not form-decode HTTP Basic credentials (RFC 6749 §2.3.1): use client-auth post",
    // The client form-encodes the secret as RFC 6749 §2.3.1 says ("pass+word%2F%2B7c1f"), which
    // this server compares as is. The same credentials in Basic without form-encoding pass (200),
    // so the encoding is the difference.
    () => assertBasicRefusedPostAccepted(server, subjectToken, CLIENTS.spaced, 200),
  );

  await t.step(
    'it splits Basic credentials at every ":", so such a secret fails even unencoded: use client-auth post',
    () => assertBasicRefusedPostAccepted(server, subjectToken, CLIENTS.colon, 401),
  );

  await t.step(
    "it answers 401 invalid_client without WWW-Authenticate (RFC 6749 §5.2): the client does not need it",
    () => assertRefusedWithoutWwwAuthenticate(server, subjectToken),
  );

  await t.step(
    "it keeps only the last of repeated audience parameters (RFC 8693 §2.1 allows several): ask for one",
    () => assertLastAudienceKept(server, subjectToken),
  );

  await t.step(
    "it requires client_id, though RFC 8693 makes client authentication optional: set client-id",
    () => assertClientIdRequired(server, subjectToken),
  );
});

/** The response has no issued_token_type; the client returns the token and says so under debug. */
async function assertTakenWithoutIssuedTokenType(
  server: Oauth2Server,
  subjectToken: string,
): Promise<void> {
  const debug: string[] = [];
  const result = await exchangeToken({
    tokenEndpoint: server.url,
    subjectToken,
    clientId: CLIENTS.public.id,
    onDebug: (line) => debug.push(line),
  });
  const response = server.responses.at(-1)!;
  assert.deepEqual(Object.keys(response.body).sort(), [
    "access_token",
    "expires_in",
    "scope",
    "token_type",
  ]);
  assert.deepEqual([result.accessToken, result.issuedTokenType], [
    response.body.access_token,
    undefined,
  ]);
  assert.deepEqual(debug.filter((line) => line.startsWith("The response")), [
    'The response has no string "issued_token_type" (RFC 8693 §2.2.1 requires one); continuing',
  ]);
}

/** Asked for no scope, the server answers scope "", and the client passes that on. */
async function assertEmptyScopePassedOn(server: Oauth2Server, subjectToken: string): Promise<void> {
  const result = await exchangeToken({
    tokenEndpoint: server.url,
    subjectToken,
    clientId: CLIENTS.public.id,
  });
  assert.deepEqual([server.responses.at(-1)!.body.scope, result.scope], ["", ""]);
}

/**
 * The client's Basic credentials are refused (invalid_client), the same sent unencoded get
 * UNENCODED_STATUS, and client-auth post gets the token.
 */
async function assertBasicRefusedPostAccepted(
  server: Oauth2Server,
  subjectToken: string,
  client: { id: string; secret: string },
  unencodedStatus: number,
): Promise<void> {
  const { id, secret } = client;
  const basic = await rejection(
    exchangeToken({
      tokenEndpoint: server.url,
      subjectToken,
      clientId: id,
      clientSecret: secret,
    }),
  );
  assert.deepEqual(describeOAuthError(basic).error, "invalid_client");
  assert.equal(await sendBasicUnencoded(server, subjectToken, id, secret), unencodedStatus);
  const post = await exchangeToken({
    tokenEndpoint: server.url,
    subjectToken,
    clientId: id,
    clientSecret: secret,
    clientAuth: "post",
  });
  assert.equal(decodeJwt(post.accessToken)?.claims.cid, id);
}

/** A wrong secret gets 401 with no WWW-Authenticate header, and the client reports it all the same. */
async function assertRefusedWithoutWwwAuthenticate(
  server: Oauth2Server,
  subjectToken: string,
): Promise<void> {
  await rejection(exchangeToken({
    tokenEndpoint: server.url,
    subjectToken,
    clientId: CLIENTS.deployer.id,
    clientSecret: "wrong-secret",
  }));
  const response = server.responses.at(-1)!;
  assert.deepEqual([response.status, response.headers["www-authenticate"]], [401, undefined]);
}

/** Of two audiences asked for, the server keeps only the second, in the exchange and the token. */
async function assertLastAudienceKept(server: Oauth2Server, subjectToken: string): Promise<void> {
  const result = await exchangeToken({
    tokenEndpoint: server.url,
    subjectToken,
    clientId: CLIENTS.public.id,
    audience: ["https://first.example.com", "https://second.example.com"],
  });
  assert.deepEqual(
    [server.exchanges.at(-1)!.audience, decodeJwt(result.accessToken)?.claims.aud],
    ["https://second.example.com", "https://second.example.com"],
  );
}

/** Without client_id the server refuses with invalid_request, which the client reports as is. */
async function assertClientIdRequired(server: Oauth2Server, subjectToken: string): Promise<void> {
  const error = await rejection(exchangeToken({ tokenEndpoint: server.url, subjectToken }));
  assert.deepEqual(describeOAuthError(error), {
    status: 400,
    error: "invalid_request",
    errorDescription: "Check the `client_id` parameter",
    attempts: 1,
    message:
      'Token endpoint refused the exchange: HTTP 400, error "invalid_request": "Check the `client_id` parameter"',
  });
}

/** Sends the exchange with Basic credentials that are not form-encoded, and returns the status. */
async function sendBasicUnencoded(
  server: Oauth2Server,
  subjectToken: string,
  id: string,
  secret: string,
): Promise<number> {
  const request = buildTokenExchangeRequest({ tokenEndpoint: server.url, subjectToken });
  request.headers.set("authorization", `Basic ${btoa(`${id}:${secret}`)}`);
  const response = await fetch(request.url, {
    method: "POST",
    headers: request.headers,
    body: request.body,
  });
  await response.body?.cancel();
  return response.status;
}

// cli.ts as a subprocess, with the stand-in buildkite-agent handing out the signed subject token.

const CLAIMS_LINE =
  `token-exchange: Buildkite OIDC token: iss="${SUBJECT_ISSUER}" sub="${subjectClaims().sub}" aud="${STS_AUDIENCE}"`;

/** Runs cli.ts against the server, with --debug or without, checking every secret involved. */
async function runInterop(
  server: Oauth2Server,
  subjectToken: string,
  args: string[],
  options: { debug: boolean; env?: Record<string, string> },
) {
  return await runCli(
    [
      "--token-endpoint",
      server.url,
      "--audience",
      STS_AUDIENCE,
      ...args,
      ...(options.debug ? ["--debug"] : []),
    ],
    {
      env: { STANDIN_TOKEN: subjectToken, ...options.env },
      secrets: () => ({ hidden: [subjectToken, ...CLIENT_SECRETS], issued: issuedTokens(server) }),
    },
  );
}

/** stderr without the --debug lines and the stack trace --debug adds to a failure. */
function errorLines(stderr: string): string[] {
  return stderr.split("\n").filter((line) =>
    line !== "" && !line.startsWith("token-exchange: debug: ") && !/^\s+at /.test(line) &&
    !/^[A-Za-z]*Error: /.test(line)
  );
}

for (const debug of [false, true]) {
  const mode = debug ? "with --debug" : "without --debug";

  Deno.test(`cli.ts exchanges a Buildkite OIDC token at @jmondi/oauth2-server, ${mode}`, async () => {
    await using server = await startOauth2Server();
    const subjectToken = await server.subjectToken();
    const result = await runInterop(server, subjectToken, [
      "--target-audience",
      API,
      "--scope",
      "deploy",
      "--client-id",
      CLIENTS.deployer.id,
      "--client-secret-env",
      "STS_SECRET",
    ], { debug, env: { STS_SECRET: CLIENTS.deployer.secret } });
    assert.deepEqual(
      { code: result.code, stdout: result.stdout, errors: errorLines(result.stderr) },
      { code: 0, stdout: `${issuedTokens(server)[0]}\n`, errors: [] },
    );
    assert.deepEqual(result.agentCalls, [["oidc", "request-token", "--audience", STS_AUDIENCE]]);
    assert.deepEqual(server.exchanges.map((seen) => [seen.audience, seen.scopes]), [[API, [
      "deploy",
    ]]]);
    if (debug) {
      const lines = result.stderr.split("\n");
      assert.ok(
        lines.includes(
          'token-exchange: debug: The response has no string "issued_token_type" (RFC 8693 §2.2.1 requires one); continuing',
        ),
        result.stderr,
      );
      assert.ok(
        lines.includes(
          "token-exchange: debug: Response: issued_token_type=(none) token_type=Bearer expires_in=3600 scope=deploy",
        ) ||
          lines.includes(
            "token-exchange: debug: Response: issued_token_type=(none) token_type=Bearer expires_in=3599 scope=deploy",
          ),
        result.stderr,
      );
    } else {
      assert.equal(result.stderr, "");
    }
  });

  Deno.test(`cli.ts reports @jmondi/oauth2-server's refusals in one line with the token's claims, ${mode}`, async (t) => {
    await using server = await startOauth2Server();
    const good = await server.subjectToken();
    const cases: [string, Promise<string> | string, string[], Record<string, string>, string][] = [
      [
        "a wrong client secret",
        good,
        ["--client-id", CLIENTS.deployer.id, "--client-secret-env", "STS_SECRET"],
        { STS_SECRET: "not-the-secret" },
        'Token endpoint refused the exchange: HTTP 401, error "invalid_client": "Client has been revoked or is invalid."; check --client-id, the secret in --client-secret-env and --client-auth (basic or post)',
      ],
      [
        "an unknown scope",
        good,
        ["--client-id", CLIENTS.public.id, "--scope", "admin"],
        {},
        'Token endpoint refused the exchange: HTTP 400, error "invalid_scope": "Check the `admin` scope(s)"; check --scope against what the endpoint allows',
      ],
      [
        "an expired subject token",
        server.subjectToken({ exp: 1_700_000_000 }),
        ["--client-id", CLIENTS.public.id],
        {},
        'Token endpoint refused the exchange: HTTP 400, error "invalid_request": "subject_token has expired"; check that the endpoint\'s trust policy accepts the token\'s iss, sub and aud below',
      ],
    ];
    for (const [name, token, args, env, message] of cases) {
      await t.step(name, async () => {
        const result = await runInterop(server, await token, args, { debug, env });
        assert.deepEqual(
          { code: result.code, stdout: result.stdout, errors: errorLines(result.stderr) },
          { code: 1, stdout: "", errors: [`token-exchange: ${message}`, CLAIMS_LINE] },
        );
        if (!debug) assert.doesNotMatch(result.stderr, /^\s+at /m, "a stack trace without --debug");
      });
    }
  });
}

Deno.test("cli.ts needs --client-auth post for a secret @jmondi/oauth2-server cannot read from Basic", async (t) => {
  await using server = await startOauth2Server();
  const subjectToken = await server.subjectToken();
  const args = ["--client-id", CLIENTS.colon.id, "--client-secret-env", "STS_SECRET"];
  const env = { STS_SECRET: CLIENTS.colon.secret };
  await t.step("basic (the default) is refused with a hint to check client-auth", async () => {
    const result = await runInterop(server, subjectToken, args, { debug: false, env });
    assert.deepEqual({ code: result.code, errors: errorLines(result.stderr) }, {
      code: 1,
      errors: [
        'token-exchange: Token endpoint refused the exchange: HTTP 401, error "invalid_client": "Client has been revoked or is invalid."; check --client-id, the secret in --client-secret-env and --client-auth (basic or post)',
        CLAIMS_LINE,
      ],
    });
  });
  await t.step("post gets the token", async () => {
    const result = await runInterop(server, subjectToken, [...args, "--client-auth", "post"], {
      debug: true,
      env,
    });
    assert.deepEqual({ code: result.code, stdout: result.stdout }, {
      code: 0,
      stdout: `${issuedTokens(server).at(-1)}\n`,
    });
  });
});

Deno.test("cli.ts exchanges as a public client with --client-id alone, and prints the fields with --format json", async () => {
  await using server = await startOauth2Server();
  const subjectToken = await server.subjectToken();
  const result = await runInterop(server, subjectToken, [
    "--client-id",
    CLIENTS.public.id,
    "--scope",
    "read",
    "--format",
    "json",
  ], { debug: false });
  assert.equal(result.code, 0, result.stderr);
  const output = JSON.parse(result.stdout);
  assert.deepEqual(output, {
    access_token: issuedTokens(server)[0],
    token_type: "Bearer",
    expires_in: output.expires_in,
    scope: "read",
  });
  assert.equal(decodeJwt(String(output.access_token))?.claims.cid, CLIENTS.public.id);
});
