// cli.ts from the outside: a subprocess against a token endpoint on 127.0.0.1, with a recorded
// stand-in buildkite-agent on PATH. Every run is checked for leaked secrets by runCli().

import assert from "node:assert/strict";
import { baseEnv, CLI, type CliResult, runCli } from "./_cli.ts";
import { bomb, json, type Reply, send, sendChunked, startFaultServer } from "./_fault_server.ts";
import { startProxy } from "./_proxy.ts";
import { certFile } from "./_tls.ts";
import { oauthError, startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import {
  BUILDKITE_CLAIMS,
  CLIENT_SECRET,
  fakeJwt,
  ISSUED_TOKEN,
  SUBJECT_TOKEN,
} from "./_tokens.ts";
import denoJson from "../deno.json" with { type: "json" };

const P = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";
const CLAIMS_LINE =
  `token-exchange: Buildkite OIDC token: iss="${BUILDKITE_CLAIMS.iss}" sub="${BUILDKITE_CLAIMS.sub}" aud="${BUILDKITE_CLAIMS.aud}"`;

function issued() {
  return tokenResponse({ access_token: ISSUED_TOKEN });
}

function assertNoStackTrace(stderr: string) {
  assert.doesNotMatch(stderr, /^\s+at /m, "stderr holds a stack trace");
}

Deno.test("cli.ts exchanges the Buildkite OIDC token and prints only the issued token", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli(["--token-endpoint", server.url]);
  assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
    code: 0,
    stdout: `${ISSUED_TOKEN}\n`,
    stderr: "",
  });
  assert.deepEqual(result.agentCalls, [["oidc", "request-token", "--audience", "buildkite"]]);
  assert.deepEqual(server.requests.map((r) => r.form), [[
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", SUBJECT_TOKEN],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"],
  ]]);
});

Deno.test("cli.ts reads every option from BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([], {
    env: {
      [`${P}TOKEN_ENDPOINT`]: server.url,
      [`${P}AUDIENCE`]: "sts.example.com",
      [`${P}LIFETIME`]: "300",
      [`${P}CLAIMS_0`]: "organization_id",
      [`${P}CLAIMS_1`]: "pipeline_id",
      [`${P}SUBJECT_TOKEN_TYPE`]: "urn:ietf:params:oauth:token-type:id_token",
      [`${P}TARGET_AUDIENCE_0`]: "first",
      [`${P}TARGET_AUDIENCE_1`]: "second",
      [`${P}RESOURCE`]: "https://api.example.com",
      [`${P}SCOPE_0`]: "read",
      [`${P}SCOPE_1`]: "write",
      [`${P}REQUESTED_TOKEN_TYPE`]: "urn:ietf:params:oauth:token-type:access_token",
      [`${P}CLIENT_ID`]: "ci",
      [`${P}CLIENT_SECRET_ENV`]: "STS_SECRET",
      [`${P}CLIENT_AUTH`]: "post",
      [`${P}TIMEOUT`]: "5",
      [`${P}RETRIES`]: "0",
      [`${P}DEBUG`]: "false",
      STS_SECRET: CLIENT_SECRET,
    },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls, [[
    "oidc",
    "request-token",
    "--audience",
    "sts.example.com",
    "--lifetime",
    "300",
    "--claim",
    "organization_id",
    "--claim",
    "pipeline_id",
  ]]);
  assert.deepEqual(server.requests[0]!.form, [
    ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
    ["subject_token", SUBJECT_TOKEN],
    ["subject_token_type", "urn:ietf:params:oauth:token-type:id_token"],
    ["audience", "first"],
    ["audience", "second"],
    ["resource", "https://api.example.com"],
    ["scope", "read write"],
    ["requested_token_type", "urn:ietf:params:oauth:token-type:access_token"],
    ["client_id", "ci"],
    ["client_secret", CLIENT_SECRET],
  ]);
  assert.equal(server.requests[0]!.headers["authorization"], undefined);
});

Deno.test("cli.ts accepts the seed plugin's buildkite-audience spelling", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([], {
    env: { [`${P}TOKEN_ENDPOINT`]: server.url, [`${P}BUILDKITE_AUDIENCE`]: "identity-api" },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls, [["oidc", "request-token", "--audience", "identity-api"]]);
});

Deno.test("cli.ts accepts both audience spellings when they agree", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([], {
    env: {
      [`${P}TOKEN_ENDPOINT`]: server.url,
      [`${P}AUDIENCE`]: "x",
      [`${P}BUILDKITE_AUDIENCE`]: "x",
    },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls, [["oidc", "request-token", "--audience", "x"]]);
});

Deno.test("cli.ts lets a flag win over its variable", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([
    "--token-endpoint",
    server.url,
    "--audience",
    "from-flag",
    "--scope",
    "flag-scope",
  ], {
    env: {
      [`${P}TOKEN_ENDPOINT`]: "https://ignored.example.com/token",
      [`${P}AUDIENCE`]: "from-env",
      [`${P}BUILDKITE_AUDIENCE`]: "also-from-env",
      [`${P}SCOPE`]: "env-scope",
    },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls, [["oidc", "request-token", "--audience", "from-flag"]]);
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("scope"), "flag-scope");
});

Deno.test("cli.ts --format json prints the response fields that are present", async () => {
  await using server = startTokenEndpoint(() =>
    Response.json({
      access_token: ISSUED_TOKEN,
      token_type: "Bearer",
      expires_in: 60,
      scope: "a b",
      extra: 1,
    })
  );
  const result = await runCli(["--token-endpoint", server.url, "--format", "json"]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(JSON.parse(result.stdout), {
    access_token: ISSUED_TOKEN,
    token_type: "Bearer",
    expires_in: 60,
    scope: "a b",
  });
  assert.equal(result.stdout.trim().split("\n").length, 1);
});

Deno.test("cli.ts reads the subject token from a variable, a file or stdin instead of the agent", async (t) => {
  await using server = startTokenEndpoint(issued);
  const file = await Deno.makeTempFile();
  await Deno.writeTextFile(file, `${SUBJECT_TOKEN}\n`);
  try {
    const runs: [string, Promise<Awaited<ReturnType<typeof runCli>>>][] = [
      [
        "env",
        runCli(["--token-endpoint", server.url, "--subject-token-env", "MY_TOKEN"], {
          env: { MY_TOKEN: SUBJECT_TOKEN },
        }),
      ],
      ["file", runCli(["--token-endpoint", server.url, "--subject-token-file", file])],
      [
        "stdin",
        runCli(["--token-endpoint", server.url, "--subject-token-file", "-"], {
          stdin: `${SUBJECT_TOKEN}\n`,
        }),
      ],
    ];
    for (const [name, run] of runs) {
      await t.step(name, async () => {
        const result = await run;
        assert.equal(result.code, 0, result.stderr);
        assert.equal(result.stdout, `${ISSUED_TOKEN}\n`);
        assert.deepEqual(result.agentCalls, []);
      });
    }
    assert.deepEqual(server.requests.map((r) => new URLSearchParams(r.body).get("subject_token")), [
      SUBJECT_TOKEN,
      SUBJECT_TOKEN,
      SUBJECT_TOKEN,
    ]);
  } finally {
    await Deno.remove(file);
  }
});

Deno.test("cli.ts sends a secret with : % @ / and a space intact with basic and post", async (t) => {
  for (const auth of ["basic", "post"]) {
    await t.step(auth, async () => {
      await using server = startTokenEndpoint(issued);
      const result = await runCli(
        [
          "--token-endpoint",
          server.url,
          "--client-id",
          "ci:bot@x",
          "--client-secret-env",
          "SECRET",
          "--client-auth",
          auth,
        ],
        { env: { SECRET: CLIENT_SECRET } },
      );
      assert.equal(result.code, 0, result.stderr);
      const request = server.requests[0]!;
      let credentials: [string, string];
      if (auth === "basic") {
        const decoded = atob(request.headers["authorization"]!.replace(/^Basic /, ""));
        // RFC 6749 §2.3.1: each part is form-encoded, so the only raw ":" is the separator.
        assert.equal(decoded.split(":").length, 2);
        const [id, secret] = decoded.split(":").map((part) =>
          new URLSearchParams(`v=${part}`).get("v")!
        );
        credentials = [id!, secret!];
      } else {
        const form = new URLSearchParams(request.body);
        credentials = [form.get("client_id")!, form.get("client_secret")!];
      }
      assert.deepEqual(credentials, ["ci:bot@x", CLIENT_SECRET]);
    });
  }
});

Deno.test("cli.ts reports an OAuth error with the token's iss, sub and aud, without retrying", async () => {
  await using server = startTokenEndpoint(() =>
    oauthError(400, {
      error: "invalid_grant",
      error_description: "subject does not match the trust policy",
      error_uri: "https://sts.example.com/docs/errors",
    })
  );
  const result = await runCli(["--token-endpoint", server.url]);
  assert.equal(result.code, 1);
  assert.equal(result.stdout, "");
  assert.deepEqual(result.stderr.split("\n"), [
    'token-exchange: Token endpoint refused the exchange: HTTP 400, error "invalid_grant": "subject does not match the trust policy" (see https://sts.example.com/docs/errors); check that the endpoint\'s trust policy accepts the token\'s iss, sub and aud below',
    CLAIMS_LINE,
    "",
  ]);
  assert.equal(server.requests.length, 1);
});

Deno.test("cli.ts says what to change on a 401 invalid_client", async () => {
  await using server = startTokenEndpoint(() => oauthError(401, { error: "invalid_client" }));
  const result = await runCli([
    "--token-endpoint",
    server.url,
    "--client-id",
    "ci",
    "--client-secret-env",
    "S",
  ], {
    env: { S: CLIENT_SECRET },
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr.split("\n")[0],
    'token-exchange: Token endpoint refused the exchange: HTTP 401, error "invalid_client"; check client-id, the secret in client-secret-env and client-auth (basic or post)',
  );
  assert.equal(server.requests.length, 1);
});

Deno.test("cli.ts retries a 503 with Retry-After and then succeeds", async () => {
  await using server = startTokenEndpoint((_, index) =>
    index === 0 ? new Response("busy", { status: 503, headers: { "retry-after": "0" } }) : issued()
  );
  const result = await runCli(["--token-endpoint", server.url]);
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, `${ISSUED_TOKEN}\n`);
  assert.equal(server.requests.length, 2);
});

Deno.test("cli.ts gives up after --retries extra attempts", async () => {
  await using server = startTokenEndpoint(() =>
    new Response("down", { status: 502, headers: { "retry-after": "0" } })
  );
  const result = await runCli(["--token-endpoint", server.url, "--retries", "2"]);
  assert.equal(result.code, 1);
  assert.equal(server.requests.length, 3);
  assert.equal(
    result.stderr.split("\n")[0],
    'token-exchange: Token endpoint answered HTTP 502 Bad Gateway (text/plain): "down" (after 3 attempts)',
  );
});

Deno.test("cli.ts refuses a redirect without sending the token again", async () => {
  await using elsewhere = startTokenEndpoint(issued);
  await using server = startTokenEndpoint(() =>
    new Response(null, { status: 308, headers: { location: elsewhere.url } })
  );
  const result = await runCli(["--token-endpoint", server.url]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    new RegExp(`redirected \\(HTTP 308\\) to "${elsewhere.url}"; the request was not resent`),
  );
  assert.equal(server.requests.length, 1);
  assert.equal(elsewhere.requests.length, 0);
});

Deno.test("cli.ts fails clearly on responses that carry no usable token", async (t) => {
  const cases: [string, () => Response, string][] = [
    [
      "HTML with 200",
      () => new Response("<html>Sign in</html>", { headers: { "content-type": "text/html" } }),
      "Token endpoint answered HTTP 200 with a body that is not JSON (text/html, 20 bytes)",
    ],
    [
      "no access_token",
      () => Response.json({ token_type: "Bearer" }),
      'Token endpoint answered HTTP 200 without an "access_token" (fields: token_type)',
    ],
    [
      "an empty access_token",
      () => Response.json({ access_token: "" }),
      'Token endpoint answered HTTP 200 with an empty "access_token"',
    ],
    [
      "an oversized body",
      () => new Response("x".repeat(1024 * 1024 + 10)),
      "Token endpoint announced a 1048586-byte body, more than the 1048576-byte limit",
    ],
    [
      "a 404",
      () => new Response("Not Found", { status: 404 }),
      'Token endpoint answered HTTP 404 Not Found (text/plain): "Not Found": check the token endpoint URL',
    ],
  ];
  for (const [name, answer, message] of cases) {
    await t.step(name, async () => {
      await using server = startTokenEndpoint(answer);
      const result = await runCli(["--token-endpoint", server.url]);
      assert.equal(result.code, 1);
      assert.equal(result.stdout, "");
      assert.deepEqual(result.stderr.split("\n"), [`token-exchange: ${message}`, CLAIMS_LINE, ""]);
      assert.equal(server.requests.length, 1);
    });
  }
});

Deno.test("cli.ts times out an endpoint that never answers", async () => {
  const { promise: released, resolve: release } = Promise.withResolvers<void>();
  await using server = startTokenEndpoint(async () => {
    await released;
    return issued();
  });
  const result = await runCli([
    "--token-endpoint",
    server.url,
    "--timeout",
    "0.2",
    "--retries",
    "1",
  ]);
  release();
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr.split("\n")[0],
    `token-exchange: Token endpoint "${server.url}" did not answer within 0.2 s (after 2 attempts): raise timeout, or check this agent can reach the endpoint`,
  );
  assert.equal(server.requests.length, 2);
});

Deno.test("cli.ts discovers the token endpoint from --issuer", async () => {
  await using server = startTokenEndpoint((request) =>
    request.path === "/.well-known/openid-configuration"
      ? Response.json({ issuer: server.origin, token_endpoint: `${server.origin}/sts/token` })
      : issued()
  );
  const result = await runCli(["--issuer", server.origin]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(server.requests.map((r) => `${r.method} ${r.path}`), [
    "GET /.well-known/openid-configuration",
    "POST /sts/token",
  ]);
});

Deno.test("cli.ts reports a failing buildkite-agent with its own message", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli(["--token-endpoint", server.url], {
    env: {
      STANDIN_OIDC_FAIL: "POST https://agent.buildkite.com/v3/jobs/1/oidc/tokens: 403 Forbidden",
    },
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    "token-exchange: buildkite-agent oidc request-token failed (exit status 1): 2026-11-26 12:00:00 FATAL POST https://agent.buildkite.com/v3/jobs/1/oidc/tokens: 403 Forbidden\n",
  );
  assert.equal(server.requests.length, 0);
});

Deno.test("cli.ts says what to do when buildkite-agent is not on PATH", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli(["--token-endpoint", server.url], { noAgent: true });
  assert.equal(result.code, 1);
  // Deno itself notes first that --allow-run=buildkite-agent names a program it cannot find.
  assert.equal(
    result.stderr.trimEnd().split("\n").at(-1),
    "token-exchange: buildkite-agent is not on PATH: run inside a Buildkite job, or pass the token with --subject-token-env or --subject-token-file",
  );
});

Deno.test("cli.ts --format hook: the token and expires_in on stdout, or the error lines there, for the hooks", async (t) => {
  await using server = startTokenEndpoint(issued);
  // What the hook grants: no --allow-run, since the hook runs the agent.
  const HOOK_PERMISSIONS = ["--allow-net=127.0.0.1", "--allow-env"];
  const hook = [
    "--subject-token-source",
    "buildkite",
    "--subject-token-file",
    "-",
    "--format",
    "hook",
  ];
  await t.step("success, with the Buildkite token on stdin", async () => {
    const result = await runCli(["--token-endpoint", server.url, ...hook], {
      stdin: `${SUBJECT_TOKEN}\n`,
      noAgent: true,
      permissions: HOOK_PERMISSIONS,
    });
    assert.deepEqual(result, {
      code: 0,
      stdout: `${ISSUED_TOKEN}\n3600\n`,
      stderr: "",
      agentCalls: [],
    });
    assert.equal(
      new URLSearchParams(server.requests.at(-1)!.body).get("subject_token"),
      SUBJECT_TOKEN,
    );
  });
  await t.step("a usage error", async () => {
    const result = await runCli(["--token-endpoint", "ftp://sts.example.com", ...hook], {
      stdin: "",
    });
    assert.equal(result.code, 2);
    assert.equal(result.stderr, "");
    assert.match(result.stdout, /^token-exchange: Token endpoint \(--token-endpoint\) "ftp:/);
  });
  await t.step("the agent failed", async () => {
    const result = await runCli(["--token-endpoint", server.url, ...hook], {
      stdin: "\n!buildkite-agent-failed 1\nFATAL  403 Forbidden\n",
      noAgent: true,
      permissions: HOOK_PERMISSIONS,
    });
    assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
      code: 1,
      stdout:
        "token-exchange: buildkite-agent oidc request-token failed (exit status 1): FATAL 403 Forbidden\n",
      stderr: "",
    });
  });
});

Deno.test("cli.ts fails with exit 1 when the subject token variable is empty", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli(["--token-endpoint", server.url, "--subject-token-env", "EMPTY"], {
    env: { EMPTY: "" },
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    'token-exchange: Environment variable "EMPTY" (--subject-token-env) is empty: set it to the subject token\n',
  );
  assert.equal(server.requests.length, 0);
});

Deno.test("cli.ts exits 2 on every usage or configuration error, before any agent or network call", async (t) => {
  await using server = startTokenEndpoint(issued);
  const url = server.url;
  const cases: [string, string[], Record<string, string>, string][] = [
    [
      "an unknown flag",
      ["--token-endpoint", url, "--verbose"],
      {},
      'Unknown flag "--verbose": see --help',
    ],
    [
      "a misspelt flag",
      ["--token-endpont", url],
      {},
      'Unknown flag "--token-endpont": did you mean --token-endpoint?',
    ],
    [
      "a positional argument",
      [url],
      {},
      `Unexpected argument "${url}": options are flags such as --token-endpoint URL`,
    ],
    [
      "a flag without its value",
      ["--token-endpoint"],
      {},
      "Flag --token-endpoint needs a value: --token-endpoint URL",
    ],
    [
      "a repeated single flag",
      ["--token-endpoint", url, "--token-endpoint", url],
      {},
      "Flag --token-endpoint is given more than once: give it once",
    ],
    [
      "no endpoint",
      [],
      {},
      "No token endpoint: set --token-endpoint (or BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT), or --issuer to discover it",
    ],
    [
      "a relative URL",
      ["--token-endpoint", "sts.example.com/token"],
      {},
      'Token endpoint (--token-endpoint) "sts.example.com/token" is not an absolute URL: use a URL such as "https://sts.example.com/token"',
    ],
    [
      "plain http to a remote host",
      ["--token-endpoint", "http://sts.example.com/token"],
      {},
      'Token endpoint (--token-endpoint) "http://sts.example.com/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ],
    [
      "a plain-http endpoint from the plugin",
      [],
      { [`${P}TOKEN_ENDPOINT`]: "http://10.0.0.1/token" },
      'Token endpoint (token-endpoint) "http://10.0.0.1/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ],
    [
      "both endpoint and issuer",
      ["--token-endpoint", url],
      { [`${P}ISSUER`]: "https://issuer.example.com" },
      "Both a token endpoint (--token-endpoint) and an issuer (issuer) are set: set only one",
    ],
    [
      "conflicting audiences",
      ["--token-endpoint", url],
      { [`${P}AUDIENCE`]: "a", [`${P}BUILDKITE_AUDIENCE`]: "b" },
      'audience is "a" but buildkite-audience is "b": set only one of them',
    ],
    [
      "a zero timeout",
      ["--token-endpoint", url, "--timeout", "0"],
      {},
      '--timeout is "0": use a number of seconds above 0 (such as 10 or 2.5), at most 3600',
    ],
    [
      "a word for retries",
      ["--token-endpoint", url],
      { [`${P}RETRIES`]: "many" },
      'retries is "many": use a whole number from 0 to 100',
    ],
    [
      "a negative lifetime",
      ["--token-endpoint", url, "--lifetime", "-5"],
      {},
      '--lifetime is "-5": use a whole number of seconds above 0',
    ],
    [
      "an unknown client auth",
      ["--token-endpoint", url, "--client-auth", "jwt"],
      {},
      '--client-auth is "jwt": use basic or post',
    ],
    [
      "an unknown format",
      ["--token-endpoint", url, "--format", "yaml"],
      {},
      '--format is "yaml": use token or json',
    ],
    [
      "a non-boolean debug",
      ["--token-endpoint", url],
      { [`${P}DEBUG`]: "yes" },
      'debug is "yes": use true or false',
    ],
    [
      "an unset client secret variable",
      ["--token-endpoint", url, "--client-id", "ci", "--client-secret-env", "NOPE"],
      {},
      'Client secret variable "NOPE" (--client-secret-env) is unset or empty: set it, for example from your secrets manager',
    ],
    [
      "a bad client secret variable name",
      ["--token-endpoint", url, "--client-secret-env", "my-secret"],
      {},
      "--client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
    ],
    ["a client secret without a client ID", ["--token-endpoint", url, "--client-secret-env", "S"], {
      S: "x",
    }, "A client secret (--client-secret-env) needs a client ID: set --client-id"],
    [
      "an extra parameter without a value",
      ["--token-endpoint", url, "--extra-param", "connector_id"],
      {},
      '--extra-param has "connector_id", not NAME=VALUE: use a parameter such as connector_id=buildkite',
    ],
    [
      "an extra parameter that replaces a standard one",
      ["--token-endpoint", url, "--extra-param", "scope=admin"],
      {},
      'Cannot send "scope" as an extra parameter: this client sets it from its own option',
    ],
    [
      "a relative resource",
      ["--token-endpoint", url, "--resource", "api"],
      {},
      '--resource has "api", not an absolute URI without a fragment: use a URI such as "https://api.example.com"',
    ],
    [
      "two subject token sources",
      ["--token-endpoint", url, "--subject-token-env", "A", "--subject-token-file", "f"],
      {},
      "Both --subject-token-env and --subject-token-file are set: use one",
    ],
    [
      "an unknown subject token source",
      ["--token-endpoint", url, "--subject-token-source", "jenkins"],
      {},
      '--subject-token-source is "jenkins": use buildkite or github-actions or gitlab',
    ],
    [
      "gitlab without a variable",
      ["--token-endpoint", url, "--subject-token-source", "gitlab"],
      {},
      "--subject-token-source gitlab needs --subject-token-env NAME, the variable your id_tokens: block defines",
    ],
    [
      "--lifetime with a token from a variable",
      ["--token-endpoint", url, "--subject-token-env", "T", "--lifetime", "60"],
      { T: "x" },
      "--lifetime applies only to a token from buildkite-agent, not to --subject-token-env",
    ],
  ];
  for (const [name, args, env, message] of cases) {
    await t.step(name, async () => {
      const result = await runCli(args, { env });
      assert.deepEqual(
        {
          code: result.code,
          stdout: result.stdout,
          stderr: result.stderr,
          agentCalls: result.agentCalls,
        },
        { code: 2, stdout: "", stderr: `token-exchange: ${message}\n`, agentCalls: [] },
      );
    });
  }
  assert.equal(server.requests.length, 0);
});

Deno.test("cli.ts --debug explains each step on stderr and never prints a secret", async () => {
  await using server = startTokenEndpoint((_, index) =>
    index === 0 ? new Response(null, { status: 503, headers: { "retry-after": "0" } }) : issued()
  );
  const result = await runCli(
    ["--token-endpoint", server.url, "--debug", "--client-id", "ci", "--client-secret-env", "S"],
    { env: { S: CLIENT_SECRET } },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.stdout, `${ISSUED_TOKEN}\n`);
  const lines = result.stderr.trimEnd().split("\n");
  assert.ok(lines.every((line) => line.startsWith("token-exchange: debug: ")), result.stderr);
  const text = lines.map((line) => line.slice("token-exchange: debug: ".length));
  assert.equal(
    text[0],
    "Requesting the subject token: buildkite-agent oidc request-token --audience buildkite",
  );
  assert.match(
    text[1]!,
    /^Buildkite OIDC token: header \{"alg":"RS256","typ":"JWT","kid":"test-key"\} claims \{"iss":"https:\/\/agent.buildkite.com",.*"job_id":"[^"]+"\}; expires in \d+ s$/,
  );
  assert.ok(text.includes(`Token endpoint: ${server.url}`));
  assert.ok(
    text.some((line) => /^Parameters: .*subject_token=\*\*\* \(\d+ characters\)/.test(line)),
  );
  assert.ok(text.includes('Client authentication: HTTP Basic as "ci" (secret ***)'));
  assert.ok(text.includes("HTTP 503; retrying in 0 s (as Retry-After asks)"));
  assert.ok(
    text.some((line) =>
      line.startsWith('Issued token: header {"alg":"RS256"') && line.includes('"sub":"deployer"')
    ),
  );
  assert.ok(text.includes(
    "Response: issued_token_type=urn:ietf:params:oauth:token-type:access_token token_type=Bearer expires_in=3600 scope=(none)",
  ));
});

Deno.test("cli.ts --debug on a failure shows the steps and a masked stack, never a secret", async () => {
  await using server = startTokenEndpoint(() =>
    oauthError(400, { error: "invalid_request", error_description: `bad ${SUBJECT_TOKEN}` })
  );
  const result = await runCli(["--token-endpoint", server.url, "--debug"]);
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /token-exchange: Token endpoint refused the exchange: HTTP 400, error "invalid_request": "bad \*\*\*"/,
  );
  assert.ok(result.stderr.includes(CLAIMS_LINE));
});

Deno.test("cli.ts --help and --version print and exit 0 without any permission", async () => {
  const help = await runCli(["--help"], { permissions: [] });
  assert.equal(help.code, 0, help.stderr);
  for (
    const flag of [
      "--token-endpoint",
      "--issuer",
      "--audience",
      "--lifetime",
      "--claim",
      "--subject-token-type",
      "--target-audience",
      "--resource",
      "--scope",
      "--requested-token-type",
      "--client-id",
      "--client-secret-env",
      "--client-auth",
      "--timeout",
      "--retries",
      "--debug",
      "--subject-token-env",
      "--subject-token-file",
      "--subject-token-source",
      "--format",
      "--help",
      "--version",
    ]
  ) {
    assert.match(help.stdout, new RegExp(`${flag} `), flag);
  }
  const version = await runCli(["-V"], { permissions: [] });
  assert.deepEqual({ code: version.code, stdout: version.stdout }, {
    code: 0,
    stdout: `token-exchange ${denoJson.version}\n`,
  });
});

Deno.test("cli.ts never prints a stack trace without --debug", async () => {
  await using server = startTokenEndpoint(() => new Response("{", { status: 200 }));
  const result = await runCli(["--token-endpoint", server.url]);
  assert.equal(result.code, 1);
  assertNoStackTrace(result.stderr);
});

Deno.test("cli.ts --subject-token-source github-actions asks the Actions token service for the audience", async () => {
  await using actions = startTokenEndpoint(() => Response.json({ value: SUBJECT_TOKEN }));
  await using server = startTokenEndpoint(issued);
  const result = await runCli(
    [
      "--token-endpoint",
      server.url,
      "--subject-token-source",
      "github-actions",
      "--audience",
      "https://sts.example.com",
    ],
    {
      env: {
        ACTIONS_ID_TOKEN_REQUEST_URL: `${actions.origin}/_apis/token?api-version=2.0`,
        ACTIONS_ID_TOKEN_REQUEST_TOKEN: "actions-request-token",
      },
    },
  );
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls, []);
  assert.deepEqual(actions.requests.map((r) => [r.method, r.path, r.headers["authorization"]]), [
    [
      "GET",
      "/_apis/token?api-version=2.0&audience=https%3A%2F%2Fsts.example.com",
      "Bearer actions-request-token",
    ],
  ]);
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("subject_token"), SUBJECT_TOKEN);
});

Deno.test("cli.ts --subject-token-source github-actions says which permission is missing", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([
    "--token-endpoint",
    server.url,
    "--subject-token-source",
    "github-actions",
  ]);
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    "token-exchange: ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the workflow job `permissions: id-token: write`\n",
  );
});

Deno.test("cli.ts keeps the token endpoint's query (RFC 6749 §3.2), where Dex up to v2.45 reads connector_id", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([
    "--token-endpoint",
    `${server.url}?connector_id=buildkite`,
    "--subject-token-type",
    "urn:ietf:params:oauth:token-type:id_token",
  ]);
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(server.requests.map((r) => [r.method, r.path, r.form.map(([name]) => name)]), [
    [
      "POST",
      "/token?connector_id=buildkite",
      ["grant_type", "subject_token", "subject_token_type"],
    ],
  ]);
});

const ACTIONS_REQUEST_TOKEN = "actions-request-token-0123456789";

function actionsEnv(origin: string): Record<string, string> {
  return {
    ACTIONS_ID_TOKEN_REQUEST_URL: `${origin}/_apis/token?api-version=2.0`,
    ACTIONS_ID_TOKEN_REQUEST_TOKEN: ACTIONS_REQUEST_TOKEN,
  };
}

Deno.test("cli.ts --subject-token-source github-actions without --audience asks for the service's default audience", async () => {
  await using actions = startTokenEndpoint(() => Response.json({ value: SUBJECT_TOKEN }));
  await using server = startTokenEndpoint(issued);
  const result = await runCli(
    ["--token-endpoint", server.url, "--subject-token-source", "github-actions"],
    { env: actionsEnv(actions.origin), secrets: () => ({ hidden: [ACTIONS_REQUEST_TOKEN] }) },
  );
  assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
    code: 0,
    stdout: `${ISSUED_TOKEN}\n`,
    stderr: "",
  });
  assert.deepEqual(actions.requests.map((r) => [r.method, r.path, r.headers["authorization"]]), [
    ["GET", "/_apis/token?api-version=2.0", `Bearer ${ACTIONS_REQUEST_TOKEN}`],
  ]);
});

Deno.test("cli.ts --subject-token-source github-actions reports the token service's refusal once, masking the request token", async () => {
  await using actions = startTokenEndpoint(() =>
    Response.json(
      { message: `Bearer ${ACTIONS_REQUEST_TOKEN} may not request an ID token` },
      { status: 403 },
    )
  );
  await using server = startTokenEndpoint(issued);
  const result = await runCli(
    ["--token-endpoint", server.url, "--subject-token-source", "github-actions"],
    { env: actionsEnv(actions.origin), secrets: () => ({ hidden: [ACTIONS_REQUEST_TOKEN] }) },
  );
  assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
    code: 1,
    stdout: "",
    stderr:
      'token-exchange: GitHub Actions token service answered HTTP 403: "{"message":"Bearer *** may not request an ID token"}"\n',
  });
  assert.equal(actions.requests.length, 1, "a 403 is not retried");
  assert.equal(server.requests.length, 0, "nothing is exchanged without a subject token");
});

Deno.test("cli.ts --subject-token-source github-actions fails on an answer without a string value", async (t) => {
  for (
    const [name, body] of [
      ["no value", { count: 1 }],
      ["a value that is not a string", { value: 42 }],
      ["not JSON", "<html>sign in</html>"],
    ] as const
  ) {
    await t.step(name, async () => {
      await using actions = startTokenEndpoint(() =>
        typeof body === "string" ? new Response(body) : Response.json(body)
      );
      await using server = startTokenEndpoint(issued);
      const result = await runCli(
        ["--token-endpoint", server.url, "--subject-token-source", "github-actions"],
        { env: actionsEnv(actions.origin), secrets: () => ({ hidden: [ACTIONS_REQUEST_TOKEN] }) },
      );
      assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
        code: 1,
        stdout: "",
        stderr: 'token-exchange: GitHub Actions token service answered without a string "value"\n',
      });
      assert.equal(server.requests.length, 0);
    });
  }
});

Deno.test("cli.ts --subject-token-source gitlab reads the id_tokens variable, or names the YAML to add", async () => {
  await using server = startTokenEndpoint(issued);
  const ok = await runCli(
    [
      "--token-endpoint",
      server.url,
      "--subject-token-source",
      "gitlab",
      "--subject-token-env",
      "STS_ID_TOKEN",
    ],
    { env: { STS_ID_TOKEN: SUBJECT_TOKEN } },
  );
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("subject_token"), SUBJECT_TOKEN);
  const missing = await runCli([
    "--token-endpoint",
    server.url,
    "--subject-token-source",
    "gitlab",
    "--subject-token-env",
    "STS_ID_TOKEN",
  ]);
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    'token-exchange: GitLab ID token variable "STS_ID_TOKEN" is not set: add `id_tokens: { STS_ID_TOKEN: { aud: "<audience>" } }` to the job in .gitlab-ci.yml\n',
  );
  assert.equal(server.requests.length, 1);
});

Deno.test("cli.ts names the subject token file it cannot read", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([
    "--token-endpoint",
    server.url,
    "--subject-token-file",
    "/nonexistent/token",
  ]);
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    'token-exchange: Cannot read the subject token file "/nonexistent/token" (--subject-token-file): no such file\n',
  );
});

Deno.test("cli.ts sends --extra-param and the plugin's extra-params after the RFC 8693 parameters", async () => {
  await using server = startTokenEndpoint(issued);
  const flags = await runCli(
    [
      "--token-endpoint",
      server.url,
      "--extra-param",
      "connector_id=buildkite",
      "--extra-param",
      "note=a=b",
    ],
    { env: { [`${P}EXTRA_PARAMS_0`]: "ignored=because-a-flag-wins" } },
  );
  assert.equal(flags.code, 0, flags.stderr);
  const plugin = await runCli(["--token-endpoint", server.url], {
    env: { [`${P}EXTRA_PARAMS`]: "connector_id=github" },
  });
  assert.equal(plugin.code, 0, plugin.stderr);
  assert.deepEqual(server.requests.map((r) => r.form.slice(3)), [
    [["connector_id", "buildkite"], ["note", "a=b"]],
    [["connector_id", "github"]],
  ]);
});

// Security: what a hostile endpoint, a proxy from the environment or a mistaken pipeline.yml can
// make the command do (issue 9).

Deno.test("cli.ts reaches a loopback endpoint directly, whatever proxy the environment names", async (t) => {
  await using proxy = await startProxy();
  await using plain = startTokenEndpoint(issued);
  await using tls = await startFaultServer(
    (socket) => json(200, JSON.stringify({ access_token: ISSUED_TOKEN }))(socket, 0),
    { tls: true },
  );
  await using cert = await certFile();
  const port = new URL(tls.origin).port;
  const cases: [string, string, string[]][] = [
    ["HTTP_PROXY", plain.url, []],
    ["http_proxy", plain.url.replace("127.0.0.1", "localhost"), []],
    ["ALL_PROXY", plain.url, []],
    ["all_proxy", plain.url, []],
    ["HTTPS_PROXY", `https://127.0.0.1:${port}/token`, [`--cert=${cert.path}`]],
    ["https_proxy", `https://localhost:${port}/token`, [`--cert=${cert.path}`]],
    ["ALL_PROXY", `https://127.0.0.1:${port}/token`, [`--cert=${cert.path}`]],
  ];
  for (const [variable, endpoint, extra] of cases) {
    await t.step(`${variable}, ${endpoint.replace(/:\d+/, ":PORT")}`, async () => {
      const result = await runCli(["--token-endpoint", endpoint, "--retries", "0"], {
        env: { [variable]: proxy.url, NO_PROXY: "example.com,10.0.0.0/8" },
        permissions: [
          "--allow-net=127.0.0.1,localhost",
          "--allow-env",
          "--allow-run=buildkite-agent",
          ...extra,
        ],
      });
      assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
        code: 0,
        stdout: `${ISSUED_TOKEN}\n`,
        stderr: "",
      });
      assert.deepEqual(proxy.lines(), [], "the proxy was contacted");
    });
  }
  assert.equal(plain.requests.length, 4);
  assert.equal(tls.requests.length, 3);
});

Deno.test("cli.ts sends a request for another host through HTTPS_PROXY (a CONNECT, the token inside TLS), unless NO_PROXY names it", async (t) => {
  await using proxy = await startProxy();
  const args = [
    "--token-endpoint",
    "https://sts.invalid/token",
    "--retries",
    "0",
    "--timeout",
    "5",
  ];
  const permissions = ["--allow-net=127.0.0.1,sts.invalid", "--allow-env", "--allow-run"];
  await t.step("HTTPS_PROXY", async () => {
    const result = await runCli(args, { env: { HTTPS_PROXY: proxy.url }, permissions });
    assert.equal(result.code, 1, result.stderr);
    assert.match(
      result.stderr.split("\n")[0]!,
      /^token-exchange: Cannot reach token endpoint "https:\/\/sts.invalid\/token": .*tunnel/,
    );
    assert.deepEqual(proxy.lines(), ["CONNECT sts.invalid:443 HTTP/1.1"]);
    assert.ok(!proxy.received.join("").includes(SUBJECT_TOKEN), "the proxy saw the token");
  });
  await t.step("HTTPS_PROXY with NO_PROXY=sts.invalid", async () => {
    const result = await runCli(args, {
      env: { HTTPS_PROXY: proxy.url, NO_PROXY: "sts.invalid" },
      permissions,
    });
    assert.equal(result.code, 1, result.stderr);
    assert.doesNotMatch(result.stderr, /tunnel/);
    assert.equal(proxy.lines().length, 1, "the proxy was contacted again");
  });
});

/** The peak RSS of a command in KiB, from GNU time where there is one, or else from /proc. */
async function peakRss(command: string[], env: Record<string, string>): Promise<number> {
  const time = "/usr/bin/time";
  const hasTime = await Deno.stat(time).then(() => true, () => false);
  const report = await Deno.makeTempFile({ prefix: "peak-rss-" });
  try {
    const child = new Deno.Command(hasTime ? time : command[0]!, {
      args: hasTime ? ["-f", "%M", "-o", report, ...command] : command.slice(1),
      clearEnv: true,
      env,
      stdout: "null",
      stderr: "piped",
    }).spawn();
    let polled = 0;
    if (!hasTime) {
      // VmHWM is the high-water mark: the last reading before the process ends is its peak, or
      // close to it.
      const status = `/proc/${child.pid}/status`;
      const timer = setInterval(async () => {
        const text = await Deno.readTextFile(status).catch(() => "");
        const match = /^VmHWM:\s+(\d+) kB/m.exec(text);
        if (match) polled = Math.max(polled, Number(match[1]));
      }, 2);
      await child.status;
      clearInterval(timer);
    }
    const output = await child.output();
    const stderr = new TextDecoder().decode(output.stderr);
    assert.equal(output.code, 1, stderr);
    assert.match(stderr, /sent a body of more than 1048576 bytes \(Content-Encoding "(gzip|br)"\)/);
    return hasTime ? Number((await Deno.readTextFile(report)).trim().split("\n").at(-1)) : polled;
  } finally {
    await Deno.remove(report);
  }
}

Deno.test("cli.ts stays under 100 MiB of memory against a compression bomb on every read path", async (t) => {
  const GiB = 1024 * 1024 * 1024;
  const cases: [string, string, () => Reply][] = [
    [
      "gzip, 1 GiB, with Content-Length",
      "token-endpoint",
      () =>
        send(
          200,
          { "content-type": "application/json", "content-encoding": "gzip" },
          bomb("gzip", GiB),
        ),
    ],
    [
      "gzip, 1 GiB, chunked",
      "token-endpoint",
      () =>
        sendChunked(
          200,
          { "content-type": "application/json", "content-encoding": "gzip" },
          bomb("gzip", GiB),
        ),
    ],
    [
      "br, 256 MiB, as an error body",
      "token-endpoint",
      () =>
        send(
          400,
          { "content-type": "application/json", "content-encoding": "br" },
          bomb("br", GiB / 4),
        ),
    ],
    [
      "gzip, 1 GiB, as issuer metadata",
      "issuer",
      () =>
        send(
          200,
          { "content-type": "application/json", "content-encoding": "gzip" },
          bomb("gzip", GiB),
        ),
    ],
  ];
  for (const [name, option, reply] of cases) {
    await t.step(name, async () => {
      await using server = await startFaultServer((socket) => reply()(socket, 0));
      const kib = await peakRss([
        Deno.execPath(),
        "run",
        "--no-prompt",
        "--allow-net=127.0.0.1",
        "--allow-env",
        CLI,
        `--${option}`,
        option === "issuer" ? server.origin : server.url,
        "--subject-token-env",
        "SUBJECT",
        "--retries",
        "0",
      ], { ...baseEnv(), SUBJECT: SUBJECT_TOKEN });
      assert.ok(kib > 0, "no reading");
      assert.ok(kib < 100 * 1024, `peak RSS ${Math.round(kib / 1024)} MiB`);
    });
  }
});

Deno.test("cli.ts exits 2 on a token endpoint or issuer that would not make one clean --allow-net host, naming the option", async (t) => {
  const cases: [string, string, string][] = [
    [
      "a comma in the host",
      "https://sts.example.com,evil.example.com/token",
      '"https://sts.example.com,evil.example.com/token" has a comma in its host "sts.example.com,evil.example.com": a host is one DNS name or IP address',
    ],
    [
      "a space",
      "https://sts.example.com /token",
      '"https://sts.example.com /token" has a space, line break or control character in it: write the URL without them',
    ],
    [
      "a line break",
      "https://sts.example.com\n.evil.example.com/token",
      '"https://sts.example.com .evil.example.com/token" has a space, line break or control character in it: write the URL without them',
    ],
    [
      "port 0",
      "https://sts.example.com:0/token",
      '"https://sts.example.com:0/token" has port "0": use a port from 1 to 65535',
    ],
    [
      "port 65536",
      "https://sts.example.com:65536/token",
      '"https://sts.example.com:65536/token" has port "65536": use a port from 1 to 65535',
    ],
    [
      "an empty port",
      "https://sts.example.com:/token",
      '"https://sts.example.com:/token" has port "": use a port from 1 to 65535',
    ],
    [
      "a user name and password",
      "https://user:pw@sts.example.com/token",
      "must not contain a user name or password (user@host): use client-id and client-secret-env instead",
    ],
    [
      "a backslash before an @",
      "https://evil.example.com\\@sts.example.com/token",
      "must not contain a user name or password (user@host): use client-id and client-secret-env instead",
    ],
    [
      "a host that is not a DNS name",
      "https://sts_example!.com/token",
      '"https://sts_example!.com/token" has an invalid host "sts_example!.com": use a DNS name (letters, digits and hyphens; xn-- for an international name) or an IP address',
    ],
    [
      "an international name not in xn-- form",
      "https://bücher.example/token",
      '"https://bücher.example/token" has an invalid host "bücher.example": use a DNS name (letters, digits and hyphens; xn-- for an international name) or an IP address',
    ],
    [
      "a shorthand IPv4 address",
      "http://127.1:8080/token",
      '"http://127.1:8080/token" has host "127.1", which means "127.0.0.1": write "127.0.0.1" instead',
    ],
    [
      "no slashes after the scheme",
      "https:sts.example.com/token",
      '"https:sts.example.com/token" must start with "https://"',
    ],
  ];
  for (const [name, value, message] of cases) {
    await t.step(name, async () => {
      for (
        const [args, env, option] of [
          [["--token-endpoint", value], {}, "Token endpoint (--token-endpoint)"],
          [[], { [`${P}TOKEN_ENDPOINT`]: value }, "Token endpoint (token-endpoint)"],
          [["--issuer", value], {}, "Issuer (--issuer)"],
          [[], { [`${P}ISSUER`]: value }, "Issuer (issuer)"],
        ] as [string[], Record<string, string>, string][]
      ) {
        const result = await runCli(args, { env });
        assert.deepEqual(
          {
            code: result.code,
            stdout: result.stdout,
            stderr: result.stderr,
            agentCalls: result.agentCalls,
          },
          { code: 2, stdout: "", stderr: `token-exchange: ${option} ${message}\n`, agentCalls: [] },
        );
      }
    });
  }
  await t.step("a DNS name, an IPv6 literal and an explicit port are fine", async () => {
    await using server = startTokenEndpoint(issued);
    const permissions = ["--allow-net=127.0.0.1,localhost", "--allow-env", "--allow-run"];
    const result = await runCli(
      ["--token-endpoint", server.url.replace("127.0.0.1", "localhost")],
      { permissions },
    );
    assert.equal(result.code, 0, result.stderr);
    // Past the configuration checks, to a port where nothing listens.
    const v6 = await runCli(["--token-endpoint", "http://[::1]:1/token", "--retries", "0"]);
    assert.equal(v6.code, 1);
    assert.match(
      v6.stderr,
      /^token-exchange: Cannot reach token endpoint "http:\/\/\[::1\]:1\/token"/,
    );
  });
});

Deno.test("cli.ts never prints a client-secret-env or subject-token-env value that may be the secret itself", async (t) => {
  const SECRET_LIKE = "s3cr3t.Value/with+base64==";
  const NAME_LIKE = "AbCdEf0123456789xyzSecret";
  const cases: [string, string[], Record<string, string>, string, number][] = [
    [
      "--client-secret-env with a secret",
      ["--client-id", "ci", "--client-secret-env", SECRET_LIKE],
      {},
      "--client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
      2,
    ],
    [
      "client-secret-env with a secret",
      ["--client-id", "ci"],
      { [`${P}CLIENT_SECRET_ENV`]: SECRET_LIKE },
      "client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
      2,
    ],
    [
      "client-secret-env with a secret that could be a name",
      ["--client-id", "ci"],
      { [`${P}CLIENT_SECRET_ENV`]: NAME_LIKE },
      "Client secret variable (its name not shown) (client-secret-env) is unset or empty: set it, for example from your secrets manager",
      2,
    ],
    [
      "--subject-token-env with a token",
      ["--subject-token-env", SUBJECT_TOKEN],
      {},
      "--subject-token-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the token, such as MY_TOKEN, not to the token itself",
      2,
    ],
  ];
  await using server = startTokenEndpoint(issued);
  for (const [name, args, env, message, code] of cases) {
    await t.step(name, async () => {
      const result = await runCli(["--token-endpoint", server.url, ...args], {
        env,
        secrets: () => ({ hidden: [SECRET_LIKE, NAME_LIKE] }),
      });
      assert.deepEqual({ code: result.code, stderr: result.stderr }, {
        code,
        stderr: `token-exchange: ${message}\n`,
      });
    });
  }
  assert.equal(server.requests.length, 0);
});

Deno.test("cli.ts refuses an issued token that is not printable ASCII or is over 64 KiB, saying which rule, never the token", async (t) => {
  const cases: [string, Record<string, unknown>, string[], string][] = [
    [
      "a line break in access_token",
      { access_token: "tok\n^^^ +++" },
      [],
      'Token endpoint answered HTTP 200 with an "access_token" that has U+000A at character 4, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
    [
      "an access_token over 64 KiB",
      { access_token: "a".repeat(65537) },
      [],
      'Token endpoint answered HTTP 200 with an "access_token" that is 65537 characters long, more than the 65536 allowed',
    ],
    [
      "a refresh_token with an escape sequence, printed by --format json",
      { access_token: ISSUED_TOKEN, refresh_token: "rt\u001b[2J" },
      ["--format", "json"],
      'Token endpoint answered HTTP 200 with a "refresh_token" that has U+001B at character 3, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed',
    ],
  ];
  for (const [name, fields, args, message] of cases) {
    await t.step(name, async () => {
      await using server = startTokenEndpoint(() => Response.json(fields));
      const result = await runCli(["--token-endpoint", server.url, ...args], {
        secrets: () => ({ hidden: ["tok\n^^^ +++", "a".repeat(65537), "rt\u001b[2J"] }),
      });
      assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
        code: 1,
        stdout: "",
        stderr: `token-exchange: ${message}\n${CLAIMS_LINE}\n`,
      });
    });
  }
  await t.step("the same refresh_token when only the access token is printed", async () => {
    await using server = startTokenEndpoint(() =>
      Response.json({ access_token: ISSUED_TOKEN, refresh_token: "rt\u001b[2J" })
    );
    const result = await runCli(["--token-endpoint", server.url]);
    assert.deepEqual({ code: result.code, stdout: result.stdout }, {
      code: 0,
      stdout: `${ISSUED_TOKEN}\n`,
    });
  });
});

Deno.test("cli.ts --format json escapes DEL, C1 controls and line separators in the fields it prints", async () => {
  const hostile = "a\u007f\u0085\u009b\u2028\u2029\n^^^ +++";
  await using server = startTokenEndpoint(() =>
    Response.json({
      access_token: ISSUED_TOKEN,
      token_type: hostile,
      issued_token_type: hostile,
      scope: hostile,
    })
  );
  const result = await runCli(["--token-endpoint", server.url, "--format", "json"]);
  assert.equal(result.code, 0, result.stderr);
  const escaped = "a\\u007f\\u0085\\u009b\\u2028\\u2029\\n^^^ +++";
  assert.equal(
    result.stdout,
    `{"access_token":"${ISSUED_TOKEN}","issued_token_type":"${escaped}","token_type":"${escaped}","scope":"${escaped}"}\n`,
  );
  assert.deepEqual(JSON.parse(result.stdout).scope, hostile);
});

/** Every line on stderr: each must be the command's own, on one line, without a control character. */
function assertOwnLines(stderr: string): string[] {
  const lines = stderr.replace(/\n$/, "").split("\n");
  for (const line of lines) {
    assert.match(
      line,
      /^token-exchange: /,
      `a line the command did not write: ${JSON.stringify(line)}`,
    );
    // deno-lint-ignore no-control-regex
    assert.doesNotMatch(line, /[\x00-\x1f\x7f-\x9f\u2028\u2029]/, JSON.stringify(line));
  }
  return lines;
}

const FORGED = "x\n^^^ +++\r~~~ :key: y\u0085--- z\u2028+++ w\u001b[2K\u009b1Gtoken-exchange: ok";

Deno.test("cli.ts --debug prints what the server sent (scope, token_type, issued_token_type, the token's claims) on its own lines only", async () => {
  const hostileToken = fakeJwt({ sub: FORGED, aud: FORGED }, "SG9TVElMRS1TSUdOQVRVUkUtU0VDUkVU");
  await using server = startTokenEndpoint(() =>
    Response.json({
      access_token: hostileToken,
      token_type: FORGED,
      issued_token_type: FORGED,
      scope: FORGED,
      expires_in: `\n3600`,
    })
  );
  const result = await runCli(["--token-endpoint", server.url, "--debug"], {
    secrets: () => ({ issued: [hostileToken] }),
  });
  assert.equal(result.code, 0, result.stderr);
  const lines = assertOwnLines(result.stderr);
  const flat = "x ^^^ +++ ~~~ :key: y --- z +++ w [2K 1Gtoken-exchange: ok";
  assert.ok(
    lines.includes(
      `token-exchange: debug: Response: issued_token_type=${flat} token_type=${flat} expires_in=3600 scope=${flat}`,
    ),
    result.stderr,
  );
  assert.ok(lines.some((line) => line.startsWith("token-exchange: debug: Issued token: header")));
  assert.ok(
    lines.includes(
      `token-exchange: debug: The response's "expires_in" is the string "3600", not a number; read it as 3600`,
    ),
    result.stderr,
  );
});

Deno.test("cli.ts shows an error from outside (OAuth fields, Location, agent stderr, discovered URLs, claims) on its own lines only, with and without --debug", async (t) => {
  const runs: [string, () => Promise<CliResult>][] = [
    ["OAuth error fields", async () => {
      await using server = startTokenEndpoint(() =>
        oauthError(400, { error: FORGED, error_description: FORGED, error_uri: FORGED })
      );
      return await runCli(["--token-endpoint", server.url]);
    }],
    ["a Location header", async () => {
      await using server = await startFaultServer((socket) => {
        socket.end(
          `HTTP/1.1 307 Temporary Redirect\r\ncontent-length: 0\r\nlocation: /x\u0085^^^ +++\r\nconnection: close\r\n\r\n`,
          "latin1",
        );
      });
      return await runCli(["--token-endpoint", server.url]);
    }],
    ["the agent's stderr", () =>
      runCli(["--token-endpoint", "https://sts.example.com/token"], {
        env: { STANDIN_OIDC_FAIL: FORGED },
      })],
    ["a discovered token endpoint and issuer", async () => {
      await using server = startTokenEndpoint(() =>
        Response.json({
          issuer: `${server.origin}\n^^^ +++`,
          token_endpoint: `${server.url}\u0085~~~`,
        })
      );
      return await runCli(["--issuer", server.origin]);
    }],
    ["the subject token's claims", async () => {
      await using server = startTokenEndpoint(() => oauthError(400, { error: "invalid_grant" }));
      return await runCli(["--token-endpoint", server.url], {
        env: { STANDIN_TOKEN: fakeJwt({ iss: FORGED, sub: FORGED, aud: FORGED }) },
      });
    }],
  ];
  for (const [name, run] of runs) {
    await t.step(name, async () => {
      const result = await run();
      assert.equal(result.code, 1, result.stderr);
      const lines = assertOwnLines(result.stderr);
      assert.ok(lines.length >= 1 && lines.length <= 2, result.stderr);
    });
  }
  await t.step("with --debug, the stack trace too", async () => {
    await using server = startTokenEndpoint(() =>
      oauthError(400, { error: FORGED, error_description: FORGED })
    );
    const result = await runCli(["--token-endpoint", server.url, "--debug"]);
    assert.equal(result.code, 1);
    const lines = assertOwnLines(result.stderr);
    assert.ok(lines.some((line) => /^token-exchange: debug: at /.test(line)), result.stderr);
  });
});

Deno.test("cli.ts refuses a discovered token endpoint on another host even with unrestricted --allow-net, as the compiled binary runs", async () => {
  await using elsewhere = startTokenEndpoint(issued);
  await using issuer = startTokenEndpoint(() =>
    Response.json({
      issuer: issuer.origin,
      token_endpoint: elsewhere.url.replace("127.0.0.1", "localhost"),
    })
  );
  const result = await runCli(["--issuer", issuer.origin], {
    permissions: ["--allow-net", "--allow-env", "--allow-run=buildkite-agent"],
  });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr.split("\n")[0],
    `token-exchange: The discovered token endpoint "${
      elsewhere.url.replace("127.0.0.1", "localhost")
    }" is not on the issuer's host "${
      new URL(issuer.origin).host
    }", and this run may reach only that: set token-endpoint to it instead of issuer`,
  );
  assert.equal(elsewhere.requests.length, 0);
});
