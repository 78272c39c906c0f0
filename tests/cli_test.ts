// cli.ts from the outside: a subprocess against a token endpoint on 127.0.0.1, with a recorded
// stand-in buildkite-agent on PATH. Every run is checked for leaked secrets by runCli().

import assert from "node:assert/strict";
import { baseEnv, CLI, type CliResult, runCli } from "./_cli.ts";
import { bomb, type Reply, send, sendChunked, startFaultServer } from "./_fault_server.ts";
import { startLoopbackEndpoints, startProxy } from "./_proxy.ts";
import { oauthError, startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import {
  BUILDKITE_CLAIMS,
  CLIENT_SECRET,
  fakeJwt,
  ISSUED_TOKEN,
  SUBJECT_TOKEN,
} from "./_tokens.ts";
import denoJson from "../deno.json" with { type: "json" };
import { main } from "../cli.ts";
import { blocks, read } from "./_markdown.ts";

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

Deno.test("cli.ts --format kubernetes prints one ExecCredential in the apiVersion KUBERNETES_EXEC_INFO names", async (t) => {
  await using server = startTokenEndpoint(issued);
  const info = (apiVersion: string) =>
    JSON.stringify({ kind: "ExecCredential", apiVersion, spec: { interactive: false } });
  await t.step("v1beta1, as kubectl 1.20 asks", async () => {
    const before = Math.floor(Date.now() / 1000);
    const result = await runCli(["--token-endpoint", server.url, "--format", "kubernetes"], {
      env: { KUBERNETES_EXEC_INFO: info("client.authentication.k8s.io/v1beta1") },
    });
    assert.deepEqual(
      { code: result.code, stderr: result.stderr, lines: result.stdout.split("\n") },
      {
        code: 0,
        stderr: "",
        lines: [result.stdout.trimEnd(), ""],
      },
    );
    const credential = JSON.parse(result.stdout);
    const expiry = Date.parse(credential.status.expirationTimestamp) / 1000;
    assert.match(credential.status.expirationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
    assert.ok(expiry >= before + 3600 && expiry <= Date.now() / 1000 + 3600, String(expiry));
    assert.deepEqual(credential, {
      apiVersion: "client.authentication.k8s.io/v1beta1",
      kind: "ExecCredential",
      status: { token: ISSUED_TOKEN, expirationTimestamp: credential.status.expirationTimestamp },
    });
  });
  await t.step("an apiVersion it cannot answer in: exit 2 before the agent is asked", async () => {
    const result = await runCli(["--token-endpoint", server.url, "--format", "kubernetes"], {
      env: { KUBERNETES_EXEC_INFO: info("client.authentication.k8s.io/v1alpha1") },
    });
    assert.deepEqual(result, {
      code: 2,
      stdout: "",
      stderr:
        'token-exchange: KUBERNETES_EXEC_INFO asks for apiVersion "client.authentication.k8s.io/v1alpha1": set the kubeconfig\'s exec apiVersion to client.authentication.k8s.io/v1 or client.authentication.k8s.io/v1beta1\n',
      agentCalls: [],
    });
  });
  assert.equal(server.requests.length, 1);
});

Deno.test("cli.ts --grant-type jwt-bearer --client-auth assertion sends the OIDC token as RFC 7523's assertion and client assertion", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli([
    "--token-endpoint",
    server.url,
    "--grant-type",
    "jwt-bearer",
    "--client-auth",
    "assertion",
    "--client-id",
    "ci",
    "--scope",
    "deploy",
  ]);
  assert.deepEqual([result.code, result.stdout, result.stderr], [0, `${ISSUED_TOKEN}\n`, ""]);
  assert.deepEqual(server.requests[0]!.form, [
    ["grant_type", "urn:ietf:params:oauth:grant-type:jwt-bearer"],
    ["assertion", SUBJECT_TOKEN],
    ["scope", "deploy"],
    ["client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"],
    ["client_assertion", SUBJECT_TOKEN],
    ["client_id", "ci"],
  ]);
  const refused = await runCli([
    "--token-endpoint",
    server.url,
    "--grant-type",
    "client-credentials",
  ]);
  assert.deepEqual([refused.code, refused.stderr], [
    2,
    'token-exchange: Cannot use --grant-type "client-credentials" without client authentication: set --client-secret-env, or --client-auth "assertion"\n',
  ]);
});

Deno.test("cli.ts reads the subject token from stdin instead of the agent", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runCli(["--token-endpoint", server.url, "--subject-token-file", "-"], {
    stdin: `${SUBJECT_TOKEN}\n`,
  });
  assert.deepEqual(result, { code: 0, stdout: `${ISSUED_TOKEN}\n`, stderr: "", agentCalls: [] });
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("subject_token"), SUBJECT_TOKEN);
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
    `token-exchange: Token endpoint "${server.url}" did not answer within 0.2 s (after 2 attempts): raise --timeout, or check this agent can reach the endpoint`,
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

// Every usage and configuration error is a unit test in _cli_config_test.ts; these check the exit
// status and the streams of the real process.
Deno.test("cli.ts exits 2 with one line on stderr on a usage or configuration error, before any agent or network call", async (t) => {
  await using server = startTokenEndpoint(issued);
  const cases: [string, string[], Record<string, string>, string][] = [
    [
      "a misspelt flag",
      ["--token-endpont", server.url],
      {},
      'Unknown flag "--token-endpont": did you mean --token-endpoint?',
    ],
    ["--help=false", ["--help=false"], {}, "Flag --help takes no value: write --help alone"],
    [
      "--debug=maybe",
      ["--token-endpoint", server.url, "--debug=maybe"],
      {},
      '--debug is "maybe": use true or false',
    ],
    [
      "a plain-http endpoint from the plugin",
      [],
      { [`${P}TOKEN_ENDPOINT`]: "http://10.0.0.1/token" },
      'Token endpoint (token-endpoint) "http://10.0.0.1/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ],
  ];
  for (const [name, args, env, message] of cases) {
    await t.step(name, async () => {
      const result = await runCli(args, { env });
      assert.deepEqual(result, {
        code: 2,
        stdout: "",
        stderr: `token-exchange: ${message}\n`,
        agentCalls: [],
      });
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

// Security: what a hostile endpoint, a proxy from the environment or a mistaken pipeline.yml can
// make the command do (issue 9).

Deno.test("cli.ts reaches a loopback endpoint directly, whatever proxy the environment names", async (t) => {
  await using proxy = await startProxy();
  await using endpoints = await startLoopbackEndpoints();
  const { plain, tls, cert, port } = endpoints;
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

Deno.test("cli.ts --format json refuses a refresh_token that is not printable ASCII, saying which rule, never the token", async (t) => {
  const refreshToken = "rt\u001b[2J";
  await using server = startTokenEndpoint(() =>
    Response.json({ access_token: ISSUED_TOKEN, refresh_token: refreshToken })
  );
  await t.step("--format json", async () => {
    const result = await runCli(["--token-endpoint", server.url, "--format", "json"], {
      secrets: () => ({ hidden: [refreshToken] }),
    });
    assert.deepEqual({ code: result.code, stdout: result.stdout, stderr: result.stderr }, {
      code: 1,
      stdout: "",
      stderr:
        `token-exchange: Token endpoint answered HTTP 200 with a "refresh_token" that has U+001B at character 3, where only printable ASCII (%x20-7E, RFC 6749 Appendix A.12) is allowed\n${CLAIMS_LINE}\n`,
    });
  });
  await t.step("--format token, which does not print it", async () => {
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
    }", and this run may reach only that: set --token-endpoint to it instead of --issuer`,
  );
  assert.equal(elsewhere.requests.length, 0);
});

/**
 * Every documented command that runs the CLI outside Buildkite (a token from GitHub Actions,
 * GitLab, a variable or a file), as its words after `deno`: the shell's line continuations and
 * YAML's folded lines joined.
 */
async function documentedCommands(): Promise<string[][]> {
  const commands: string[][] = [];
  for (const path of ["docs/cli.md", "docs/beyond-buildkite.md", "README.md"]) {
    const text = await read(path);
    for (const code of [...blocks(text, "sh"), ...blocks(text, "yaml")]) {
      const joined = code.replace(/\\\n\s*/g, " ").replace(/\n\s+(?!- )(?=\S)/g, " ");
      for (const match of joined.matchAll(/\bdeno (run [^)"\n]*)/g)) {
        const words = match[1]!.trim().split(/\s+/);
        if (words.some((word) => /^--subject-token-(env|file|source)$/.test(word))) {
          commands.push(words);
        }
      }
    }
  }
  return commands;
}

Deno.test("cli.ts run as the docs and its first line show, where there is no buildkite-agent, writes nothing on stderr", async (t) => {
  await using actions = startTokenEndpoint(() => Response.json({ value: SUBJECT_TOKEN }));
  await using server = startTokenEndpoint(issued);
  const work = await Deno.makeTempDir({ prefix: "documented-commands-" });
  try {
    const commands = await documentedCommands();
    // The first line of cli.ts, for ./cli.ts on a laptop.
    const shebang = (await Deno.readTextFile(CLI)).split("\n", 1)[0]!;
    assert.match(shebang, /^#!\/usr\/bin\/env -S deno run /);
    commands.push([
      ...shebang.replace(/^.* deno /, "").split(" "),
      CLI,
      "--token-endpoint",
      "https://sts.example.com/token",
      "--subject-token-env",
      "MY_OIDC_TOKEN",
    ]);
    assert.ok(commands.length >= 4, JSON.stringify(commands));
    for (const words of commands) {
      const args = words.slice(1).map((word) =>
        word.replace(/^jsr:@equinixmetal\/token-exchange@[^/]+\/cli$/, CLI)
          .replace(/^https:\/\/sts\.example\.com\/\S*token$/, server.url)
          .replace(/^--allow-net=sts\.example\.com$/, "--allow-net=127.0.0.1")
      );
      const cli = args.indexOf(CLI);
      assert.ok(cli > 0, `not the CLI: ${words.join(" ")}`);
      const name = args.slice(cli + 1).filter((word) => word.startsWith("--subject-token")).join(
        " ",
      );
      await t.step(name, async () => {
        const file = args[args.indexOf("--subject-token-file") + 1];
        if (file !== undefined) await Deno.writeTextFile(`${work}/${file}`, SUBJECT_TOKEN);
        const variable = args[args.indexOf("--subject-token-env") + 1];
        const result = await runCli(args.slice(cli + 1), {
          permissions: args.slice(1, cli),
          noAgent: true,
          cwd: work,
          env: {
            ACTIONS_ID_TOKEN_REQUEST_URL: `${actions.origin}/_apis/token?api-version=2.0`,
            ACTIONS_ID_TOKEN_REQUEST_TOKEN: "actions-request-token",
            ...(variable === undefined ? {} : { [variable]: SUBJECT_TOKEN }),
          },
        });
        assert.deepEqual(result, {
          code: 0,
          stdout: `${ISSUED_TOKEN}\n`,
          stderr: "",
          agentCalls: [],
        });
      });
    }
    assert.ok(actions.requests.length >= 1, "the GitHub Actions example was not run");
    assert.deepEqual(
      server.requests.map((r) => new URLSearchParams(r.body).get("subject_token")),
      commands.map(() => SUBJECT_TOKEN),
    );
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("main() reads the subject token from the environment it is given, not the process's", async () => {
  await using server = startTokenEndpoint(issued);
  const env: Record<string, string> = { ONLY_IN_THIS_ENV: SUBJECT_TOKEN };
  assert.equal(Deno.env.get("ONLY_IN_THIS_ENV"), undefined);
  const printed: string[] = [];
  const { log, error } = console;
  console.log = (...data: unknown[]) => printed.push(`stdout: ${data.join(" ")}`);
  console.error = (...data: unknown[]) => printed.push(`stderr: ${data.join(" ")}`);
  let code: number;
  try {
    code = await main(
      ["--token-endpoint", server.url, "--subject-token-env", "ONLY_IN_THIS_ENV"],
      (name) => env[name],
    );
  } finally {
    Object.assign(console, { log, error });
  }
  assert.deepEqual({ code, printed }, { code: 0, printed: [`stdout: ${ISSUED_TOKEN}`] });
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("subject_token"), SUBJECT_TOKEN);
});

Deno.test("cli.ts --plugin, the hooks' engine: what to redact and export on stdout, or the failure and its status there", async (t) => {
  await using server = startTokenEndpoint(issued);
  const work = await Deno.makeTempDir({ prefix: "engine-" });
  try {
    let job = "";
    const agent = ["oidc", "request-token", "--audience", "buildkite"];
    const run = (options: Record<string, string>, stdin: string, agentArgs = agent) =>
      runCli([
        "--plugin",
        "hook",
        job = `${work}/${crypto.randomUUID()}`,
        Object.keys(options).join(","),
        ...agentArgs,
      ], {
        stdin,
        env: options,
        noAgent: true,
        permissions: [
          "--allow-net=127.0.0.1",
          "--allow-env",
          `--allow-read=${work}`,
          `--allow-write=${work}`,
          "--allow-sys",
        ],
      });
    const endpoint = { BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: server.url };
    await t.step("success", async () => {
      const result = await run(endpoint, `${SUBJECT_TOKEN}\n`);
      assert.equal(result.code, 0, result.stdout);
      const lines = result.stdout.trimEnd().split("\n");
      assert.deepEqual(lines.slice(0, 4), [
        "ready",
        "say ~~~ :key: Exchanging the job's OIDC token for FEDERATED_ACCESS_TOKEN",
        "exchanging",
        `redact ${ISSUED_TOKEN}`,
      ]);
      assert.deepEqual(lines.slice(4, 6), [
        `entry ${job}/1`,
        `export FEDERATED_ACCESS_TOKEN=${ISSUED_TOKEN}`,
      ]);
      assert.match(
        lines[6]!,
        /^export FEDERATED_ACCESS_TOKEN_EXPIRES_AT=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/,
      );
      assert.deepEqual(lines.slice(7), [
        "say Exported FEDERATED_ACCESS_TOKEN (expires in 60 min)",
        "ok",
      ]);
      assert.equal(result.stderr, "");
    });
    await t.step(
      "a configuration error, with the agent's token on stdin unread and unsent",
      async () => {
        const before = server.requests.length;
        const result = await run(
          { ...endpoint, BUILDKITE_PLUGIN_TOKEN_EXCHANGE_REDACT: "maybe" },
          `${SUBJECT_TOKEN}\n`,
        );
        assert.deepEqual([result.code, result.stdout, result.stderr], [
          2,
          'fail 🚨 Configuration error: redact is "maybe": use true or false\n!exit 2\n',
          "",
        ]);
        assert.equal(server.requests.length, before);
      },
    );
    await t.step("the agent failed", async () => {
      const result = await run(endpoint, "\n!buildkite-agent-failed 1\nFATAL  403 Forbidden\n");
      assert.equal(result.code, 1);
      assert.match(
        result.stdout,
        /\nfail 🚨 Token exchange failed: buildkite-agent oidc request-token failed \(exit status 1\): FATAL 403 Forbidden\n!exit 1\n$/,
      );
    });
    await t.step("the hook asked the agent for something else than the options say", async () => {
      const result = await run(endpoint, `${SUBJECT_TOKEN}\n`, [...agent.slice(0, 3), "other"]);
      assert.equal(result.code, 1);
      assert.match(
        result.stdout,
        /^fail 🚨 The hook asked buildkite-agent for "oidc request-token --audience other", but the options ask for "oidc request-token --audience buildkite": this is a bug in the plugin, please report it\n!exit 1\n$/,
      );
    });
    await t.step("run by hand", async () => {
      const result = await runCli(["--plugin", "exchange"], { noAgent: true });
      assert.deepEqual([result.code, result.stdout], [
        2,
        "fail 🚨 cli.ts --plugin is how the plugin's hooks run the engine: run cli.ts without it\n!exit 2\n",
      ]);
    });
  } finally {
    await Deno.remove(work, { recursive: true });
  }
});
