// The plugin's hooks, sourced under bash as the agent sources them, with a recorded stand-in
// buildkite-agent and a token endpoint on 127.0.0.1. Every run is checked for leaked secrets.

import assert from "node:assert/strict";
import { baseEnv, STANDIN_BIN } from "./_cli.ts";
import {
  defaultPath,
  DENO_BIN_DIR,
  HOOK_BASH,
  HOOK_BASH_4_1,
  PLUGIN_DIR,
  pluginEnv,
  runHooks,
} from "./_hooks.ts";
import { oauthError, startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { TEST_CERT, TEST_KEY } from "./_tls.ts";
import { BUILDKITE_CLAIMS, fakeJwt, ISSUED_TOKEN, SUBJECT_TOKEN } from "./_tokens.ts";

const issued = () => tokenResponse({ access_token: ISSUED_TOKEN });
const CLAIMS_LINE =
  `   Buildkite OIDC token: iss="${BUILDKITE_CLAIMS.iss}" sub="${BUILDKITE_CLAIMS.sub}" aud="${BUILDKITE_CLAIMS.aud}"`;

Deno.test("hooks/environment exports the token, hands it to the redactor on stdin and prints no secret", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], { options: { "token-endpoint": server.url } });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
  assert.equal(
    result.stdout,
    "~~~ :key: Exchanging the job's OIDC token for FEDERATED_ACCESS_TOKEN\nExported FEDERATED_ACCESS_TOKEN (expires in 60 min)\n",
  );
  assert.equal(result.stderr, "");
  assert.deepEqual(result.agentCalls, [
    ["oidc", "request-token", "--audience", "buildkite"],
    ["redactor", "add"],
  ]);
  assert.deepEqual(result.redacted, [ISSUED_TOKEN]);
  assert.equal(new URLSearchParams(server.requests[0]!.body).get("subject_token"), SUBJECT_TOKEN);
  // Without token-file, TMPDIR holds only the entry's record (what it exports, for the entries
  // after it and for pre-exit), and no token.
  assert.deepEqual(result.privateFiles, ["1/", "1/entry.json", "1/options", "job-pid"]);
  for (const text of Object.values(result.privateContents)) {
    assert.equal(text.includes(ISSUED_TOKEN) || text.includes(SUBJECT_TOKEN), false, text);
  }
  const ended = await runHooks(["environment", "pre-exit"], {
    options: { "token-endpoint": server.url },
  });
  assert.deepEqual([ended.code, ended.leftovers], [0, []]);
});

Deno.test("hooks/environment keeps the sourcing shell running and its options intact on success", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url },
    env: { KEEP: "kept" },
  });
  assert.equal(result.code, 0, result.stderr);
  // The report after the hook ran proves the caller went on; its variables survive.
  assert.equal(result.exported["KEEP"], "kept");
  assert.equal(result.exported["token_exchange_plugin_dir"], undefined);
});

Deno.test("hooks/environment exports under env-var so a step can hold several tokens", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, "env-var": "GCP_ACCESS_TOKEN" },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.exported["GCP_ACCESS_TOKEN"], ISSUED_TOKEN);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], undefined);
});

Deno.test("hooks/environment writes token-file with mode 0600 and pre-exit removes it and the temporary files", async () => {
  await using server = startTokenEndpoint(issued);
  const dir = await Deno.makeTempDir();
  const file = `${dir}/secrets/token`;
  try {
    const options = { "token-endpoint": server.url, "token-file": file, "env-var": "STS_TOKEN" };
    const written = await runHooks(["environment"], { options });
    assert.equal(written.code, 0, written.stderr);
    assert.equal(written.exported["STS_TOKEN_FILE"], file);
    assert.equal(await Deno.readTextFile(file), ISSUED_TOKEN);
    assert.equal((await Deno.stat(file)).mode! & 0o777, 0o600);
    assert.match(
      written.stdout,
      /Exported STS_TOKEN and STS_TOKEN_FILE \(.*\/secrets\/token\) \(expires in 60 min\)\n$/,
    );

    // The file is there until pre-exit: a second job would find it, and leave it alone.
    const again = await runHooks(["environment"], { options });
    assert.equal(again.code, 2);
    assert.match(again.stderr, /token-file .*\/secrets\/token already exists/);
    assert.equal(await Deno.readTextFile(file), ISSUED_TOKEN);
    await Deno.remove(file);

    const cleaned = await runHooks(["environment", "pre-exit"], { options });
    assert.equal(cleaned.code, 0, cleaned.stderr);
    await assert.rejects(Deno.stat(file), Deno.errors.NotFound);
    assert.deepEqual(cleaned.leftovers, []);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hooks/pre-exit leaves alone a <env-var>_FILE the plugin did not write", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/other`, "keep me");
    const result = await runHooks(["pre-exit"], {
      env: { FEDERATED_ACCESS_TOKEN_FILE: `${dir}/other` },
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(await Deno.readTextFile(`${dir}/other`), "keep me");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hooks/environment skips the redactor with redact: false", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, redact: false },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls, [["oidc", "request-token", "--audience", "buildkite"]]);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
});

Deno.test("hooks/environment warns, and still exports, on an agent too old for redactor", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url },
    env: { STANDIN_OLD_AGENT: "1" },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
  assert.equal(
    result.stderr,
    "⚠️ buildkite-agent could not add the token to the log redactor (redactor add needs agent 3.66 or later): upgrade the agent so the token is masked if a command prints it\n",
  );
});

Deno.test("hooks/environment asks the agent for both audience spellings of the seed plugin", async (t) => {
  for (const option of ["audience", "buildkite-audience"]) {
    await t.step(option, async () => {
      await using server = startTokenEndpoint(issued);
      const result = await runHooks(["environment"], {
        options: { "token-endpoint": server.url, [option]: "identity-api", debug: false },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.deepEqual(result.agentCalls[0], [
        "oidc",
        "request-token",
        "--audience",
        "identity-api",
      ]);
    });
  }
});

Deno.test("hooks/environment passes lifetime, claims and the RFC 8693 parameters through", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: {
      "token-endpoint": server.url,
      lifetime: 120,
      claims: ["organization_id", "pipeline_id"],
      "target-audience": "https://api.example.com",
      scope: ["read", "write"],
      "client-id": "ci",
      "client-secret-env": "STS_CLIENT_SECRET",
      "client-auth": "post",
    },
    env: { STS_CLIENT_SECRET: "not-a-real-secret" },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(result.agentCalls[0], [
    "oidc",
    "request-token",
    "--audience",
    "buildkite",
    "--lifetime",
    "120",
    "--claim",
    "organization_id",
    "--claim",
    "pipeline_id",
  ]);
  const form = new URLSearchParams(server.requests[0]!.body);
  assert.deepEqual(
    ["audience", "scope", "client_id", "client_secret"].map((name) => form.get(name)),
    ["https://api.example.com", "read write", "ci", "not-a-real-secret"],
  );
});

Deno.test("hooks/environment fails the job with ^^^ +++, the error and the token's iss, sub and aud", async () => {
  await using server = startTokenEndpoint(() =>
    oauthError(400, { error: "invalid_grant", error_description: "sub not allowed" })
  );
  const result = await runHooks(["environment"], { options: { "token-endpoint": server.url } });
  assert.equal(result.code, 1);
  assert.equal(
    result.stdout,
    "~~~ :key: Exchanging the job's OIDC token for FEDERATED_ACCESS_TOKEN\n^^^ +++\n",
  );
  assert.equal(
    result.stderr,
    `🚨 Token exchange failed: Token endpoint refused the exchange: HTTP 400, error "invalid_grant": "sub not allowed"; check that the endpoint's trust policy accepts the token's iss, sub and aud below\n${CLAIMS_LINE}\n`,
  );
  assert.deepEqual(result.exported, {});
  assert.deepEqual(result.leftovers, []);
});

Deno.test("hooks/environment fails on a bad configuration, and the OIDC token the agent was asked for meanwhile is never sent", async (t) => {
  await using server = startTokenEndpoint(issued);
  const cases: [string, Record<string, string | boolean>, string][] = [
    [
      "a misspelt boolean",
      { "token-endpoint": server.url, redact: "yes" },
      'redact is "yes": use true or false',
    ],
    [
      "an unknown hook",
      { "token-endpoint": server.url, hook: "post-command" },
      'hook is "post-command": use environment or pre-command',
    ],
    [
      "a bad env-var",
      { "token-endpoint": server.url, "env-var": "MY-TOKEN" },
      'env-var is "MY-TOKEN", not an environment variable name: use a name such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "no endpoint",
      {},
      "No token endpoint: set token-endpoint, or issuer to discover it",
    ],
    [
      "a plain-http endpoint",
      { "token-endpoint": "http://sts.example.com/token" },
      'Token endpoint (token-endpoint) "http://sts.example.com/token" must use https (plain http is allowed only to localhost, 127.0.0.0/8 or [::1])',
    ],
    [
      "conflicting audiences",
      { "token-endpoint": server.url, audience: "a", "buildkite-audience": "b" },
      'audience is "a" but buildkite-audience is "b": set only one of them',
    ],
    [
      "an unset client secret",
      { "token-endpoint": server.url, "client-id": "ci", "client-secret-env": "MISSING" },
      'Client secret variable "MISSING" (client-secret-env) is unset or empty: set it, for example from your secrets manager',
    ],
  ];
  for (const [name, options, message] of cases) {
    await t.step(name, async () => {
      const result = await runHooks(["environment"], { options });
      assert.equal(result.code, 2);
      assert.equal(result.stdout, "^^^ +++\n");
      assert.equal(result.stderr, `🚨 Configuration error: ${message}\n`);
      // The agent may have been asked (its request starts with the engine), never the redactor.
      assert.deepEqual(result.agentCalls.filter((call) => call[0] !== "oidc"), []);
      assert.deepEqual(result.leftovers, []);
    });
  }
  assert.equal(server.requests.length, 0);
});

Deno.test("hook: pre-command moves the exchange from the environment hook to pre-command", async () => {
  await using server = startTokenEndpoint(issued);
  const options = { "token-endpoint": server.url, hook: "pre-command" };
  const environment = await runHooks(["environment"], { options });
  assert.deepEqual({
    code: environment.code,
    stdout: environment.stdout,
    calls: environment.agentCalls,
  }, {
    code: 0,
    stdout: "",
    calls: [],
  });
  assert.equal(environment.exported["FEDERATED_ACCESS_TOKEN"], undefined);
  const both = await runHooks(["environment", "pre-command"], { options });
  assert.equal(both.code, 0, both.stderr);
  assert.equal(both.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
  assert.equal(both.agentCalls.filter((call) => call[0] === "oidc").length, 1);
  const preCommandOnly = await runHooks(["pre-command"], {
    options: { "token-endpoint": server.url },
  });
  assert.deepEqual({ code: preCommandOnly.code, calls: preCommandOnly.agentCalls }, {
    code: 0,
    calls: [],
  });
});

Deno.test("hooks/environment with debug: true explains each step without a secret", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, debug: true },
  });
  assert.equal(result.code, 0, result.stderr);
  const lines = result.stderr.trimEnd().split("\n");
  assert.ok(lines.every((line) => line.startsWith("token-exchange: debug: ")), result.stderr);
  assert.ok(lines.some((line) => line.includes('claims {"iss":"https://agent.buildkite.com"')));
  assert.ok(lines.some((line) => line.includes("Response: issued_token_type=")));
});

Deno.test("hooks run the seed plugin's pipeline unchanged", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment", "pre-exit"], {
    options: { "token-endpoint": server.url, "buildkite-audience": "identity-api", debug: false },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
});

Deno.test("hooks/ and lib/ hold no bash 4 syntax that bash 3.2 (macOS) cannot parse", async () => {
  const problems: string[] = [];
  const files = [
    "hooks/environment",
    "hooks/pre-command",
    "hooks/pre-exit",
    ...[...Deno.readDirSync(`${PLUGIN_DIR}/lib`)].map((entry) => `lib/${entry.name}`),
  ];
  for (const file of files) {
    (await Deno.readTextFile(`${PLUGIN_DIR}/${file}`)).split("\n").forEach((line, i) => {
      if (line.trimStart().startsWith("#")) return;
      // `[[ $x =~ ^(a|b)$ ]]` is a syntax error in bash 3.2: the pattern goes in a variable.
      if (/=~\s+[^\s$"'][^\s]*\(/.test(line)) problems.push(`${file}:${i + 1}: ( in a =~ pattern`);
      if (/^\s*coproc\b/.test(line)) problems.push(`${file}:${i + 1}: coproc outside eval`);
      if (/;;&|;&\s*$|\|&/.test(line)) {
        problems.push(`${file}:${i + 1}: bash 4 case or pipe operator`);
      }
    });
  }
  assert.deepEqual(problems, []);
});

Deno.test("shellcheck is clean on hooks/ and lib/", {
  ignore:
    !(await new Deno.Command("bash", { args: ["-c", "command -v shellcheck"], stdout: "null" })
      .output()).success,
}, async () => {
  const output = await new Deno.Command("shellcheck", {
    args: [
      "-x",
      "hooks/environment",
      "hooks/pre-command",
      "hooks/pre-exit",
      ...[...Deno.readDirSync(`${PLUGIN_DIR}/lib`)].map((entry) => `lib/${entry.name}`).sort(),
    ],
    cwd: PLUGIN_DIR,
  }).output();
  assert.equal(output.code, 0, new TextDecoder().decode(output.stdout));
});

Deno.test("hooks/environment fails clearly when it cannot write token-file", async () => {
  await using server = startTokenEndpoint(issued);
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(`${dir}/not-a-directory`, "");
    const file = `${dir}/not-a-directory/token`;
    const result = await runHooks(["environment"], {
      options: { "token-endpoint": server.url, "token-file": file },
    });
    assert.equal(result.code, 2);
    assert.equal(result.stdout, "^^^ +++\n");
    assert.equal(
      result.stderr,
      `🚨 Configuration error: Cannot write token-file ${file}: ${dir}/not-a-directory is not a directory; choose another path, or token-file: true for a private one\n`,
    );
    assert.equal(server.requests.length, 0);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("hooks/environment reports the agent's own failure, exit 1, without asking the endpoint", async (t) => {
  await using server = startTokenEndpoint(issued);
  await t.step("the agent refuses", async () => {
    const result = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
      env: {
        STANDIN_OIDC_FAIL: "POST https://agent.buildkite.com/v3/jobs/1/oidc/tokens: 403 Forbidden",
      },
    });
    assert.equal(result.code, 1);
    assert.match(result.stdout, /\^\^\^ \+\+\+\n$/);
    assert.equal(
      result.stderr,
      "🚨 Token exchange failed: buildkite-agent oidc request-token failed (exit status 1): 2026-11-26 12:00:00 FATAL POST https://agent.buildkite.com/v3/jobs/1/oidc/tokens: 403 Forbidden\n",
    );
    assert.deepEqual(result.exported, {});
    // The redactor made ready while the agent answered is never run.
    assert.deepEqual(result.agentCalls, [[
      "oidc",
      "request-token",
      "--audience",
      "buildkite",
    ]]);
  });
  await t.step("no agent on PATH", async () => {
    const result = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
      path: [DENO_BIN_DIR, "/usr/bin", "/bin"],
    });
    assert.equal(result.code, 1);
    assert.equal(
      result.stderr,
      "🚨 Token exchange failed: buildkite-agent is not on PATH: run inside a Buildkite job\n",
    );
  });
  assert.equal(server.requests.length, 0);
});

Deno.test("hooks/environment asks the agent for the OIDC token while Deno starts, not after", async () => {
  // The stand-in agent answers only once deno has started (a wrapper marks it), and gives up after
  // 10 s: a hook that started deno after the agent's answer would fail here.
  await using server = startTokenEndpoint(issued);
  const bin = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${bin}/deno`,
      `#!/usr/bin/env bash\n: >"$DENO_STARTED"\nexec ${JSON.stringify(Deno.execPath())} "$@"\n`,
      { mode: 0o755 },
    );
    const result = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
      env: { DENO_STARTED: `${bin}/started`, STANDIN_OIDC_WAIT_FOR: `${bin}/started` },
      path: [bin, ...defaultPath()],
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});

/**
 * A bin directory whose buildkite-agent runs the stand-in and marks `redactor add` in files: its
 * start (`redactor-started`) and, after the stand-in has exited, its end (`redactor-done`).
 */
async function markingAgent(): Promise<string> {
  const bin = await Deno.makeTempDir({ prefix: "marking-agent-" });
  await Deno.writeTextFile(
    `${bin}/buildkite-agent`,
    [
      "#!/usr/bin/env bash",
      `[[ "$1 $2" == "redactor add" ]] || exec ${
        JSON.stringify(`${STANDIN_BIN}/buildkite-agent`)
      } "$@"`,
      `: >${JSON.stringify(`${bin}/redactor-started`)}`,
      `status=0; ${JSON.stringify(`${STANDIN_BIN}/buildkite-agent`)} "$@" || status=$?`,
      `: >${JSON.stringify(`${bin}/redactor-done`)}`,
      'exit "$status"',
      "",
    ].join("\n"),
    { mode: 0o755 },
  );
  return bin;
}

/** Waits for FILE to exist, for at most 10 s; whether it did. */
async function appeared(file: string): Promise<boolean> {
  for (let i = 0; i < 1000; i++) {
    if (await Deno.stat(file).then(() => true, () => false)) return true;
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  return false;
}

Deno.test(
  "hooks/environment starts the redactor while the exchange is under way, and hands it the token",
  {
    ignore: !HOOK_BASH_4_1,
  },
  async () => {
    // The endpoint answers only once `redactor add` has started (10 s at most): a hook that started
    // the redactor after the exchange would be seen to.
    const bin = await markingAgent();
    let startedFirst: boolean | undefined;
    await using server = startTokenEndpoint(async () => {
      startedFirst = await appeared(`${bin}/redactor-started`);
      return issued();
    });
    try {
      const result = await runHooks(["environment"], {
        options: { "token-endpoint": server.url },
        path: [bin, ...defaultPath()],
      });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(startedFirst, true);
      assert.deepEqual(result.agentCalls, [
        ["oidc", "request-token", "--audience", "buildkite"],
        ["redactor", "add"],
      ]);
      assert.deepEqual(result.redacted, [ISSUED_TOKEN]);
      assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
    } finally {
      await Deno.remove(bin, { recursive: true });
    }
  },
);

Deno.test("hooks/environment stops the early redactor unused when the exchange fails", {
  ignore: !HOOK_BASH_4_1,
}, async () => {
  const bin = await markingAgent();
  let started: boolean | undefined;
  await using server = startTokenEndpoint(async () => {
    started = await appeared(`${bin}/redactor-started`);
    return oauthError(400, { error: "invalid_grant", error_description: "audience not allowed" });
  });
  try {
    const result = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
      path: [bin, ...defaultPath()],
    });
    assert.equal(result.code, 1);
    assert.equal(started, true);
    assert.match(result.stdout, /\^\^\^ \+\+\+\n$/);
    // The failure report alone: no word from the stopped redactor.
    assert.equal(
      result.stderr,
      `🚨 Token exchange failed: Token endpoint refused the exchange: HTTP 400, error "invalid_grant": "audience not allowed"; check that the endpoint's trust policy accepts the token's iss, sub and aud below\n${CLAIMS_LINE}\n`,
    );
    assert.deepEqual(result.redacted, []);
    assert.deepEqual(result.exported, {});
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});

Deno.test(
  "an agent too old for redactor, gone before the token comes, neither ends the hook's shell nor changes its SIGPIPE trap",
  {
    ignore: !HOOK_BASH_4_1,
  },
  async (t) => {
    // The endpoint answers once the old agent has exited, so the hook writes the token to a pipe
    // nobody reads: with SIGPIPE at its default, that would kill the sourcing shell.
    for (
      const [name, before, after] of [
        ["no trap", ":", ""],
        ["the caller's trap", "trap 'echo caller' PIPE", "trap -- 'echo caller' SIGPIPE"],
      ] as const
    ) {
      await t.step(name, async () => {
        const bin = await markingAgent();
        await using server = startTokenEndpoint(async () => {
          await appeared(`${bin}/redactor-done`);
          return issued();
        });
        const work = await Deno.makeTempDir({ prefix: "hook-pipe-" });
        try {
          const output = await new Deno.Command(HOOK_BASH, {
            args: [
              "-c",
              `set -euo pipefail; ${before}; source ${
                JSON.stringify(`${PLUGIN_DIR}/hooks/environment`)
              } >/dev/null; echo "alive"; trap -p PIPE`,
            ],
            cwd: work,
            clearEnv: true,
            env: {
              ...baseEnv(),
              PATH: [bin, ...defaultPath()].join(":"),
              TMPDIR: work,
              STANDIN_LOG: `${work}/agent.log`,
              STANDIN_TOKEN: SUBJECT_TOKEN,
              STANDIN_OLD_AGENT: "1",
              ...pluginEnv({ "token-endpoint": server.url }),
            },
            stdout: "piped",
            stderr: "piped",
          }).output();
          const stderr = new TextDecoder().decode(output.stderr);
          assert.equal(output.code, 0, stderr);
          assert.equal(
            new TextDecoder().decode(output.stdout),
            `alive\n${after ? `${after}\n` : ""}`,
          );
          assert.match(stderr, /redactor add needs agent 3\.66 or later/);
        } finally {
          await Deno.remove(work, { recursive: true });
          await Deno.remove(bin, { recursive: true });
        }
      });
    }
  },
);

Deno.test("debug: true lines reach the job log while the exchange is still under way, and a failure still ends with ^^^ +++", async () => {
  // The endpoint answers 503, then holds the retry until the test has seen the hook's debug line
  // about that 503: a hook that passed the CLI's stderr on only at the end would never show it.
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  await using server = startTokenEndpoint(async (_, index) => {
    if (index === 0) return new Response("busy", { status: 503 });
    await held;
    return oauthError(400, { error: "invalid_grant" });
  });
  const work = await Deno.makeTempDir({ prefix: "hook-live-" });
  try {
    await Deno.writeTextFile(`${work}/agent.log`, "");
    const child = new Deno.Command(HOOK_BASH, {
      args: [
        "-c",
        `set -euo pipefail; source ${JSON.stringify(`${PLUGIN_DIR}/hooks/environment`)}`,
      ],
      cwd: work,
      clearEnv: true,
      env: {
        ...baseEnv(),
        PATH: defaultPath().join(":"),
        TMPDIR: work,
        STANDIN_LOG: `${work}/agent.log`,
        STANDIN_TOKEN: SUBJECT_TOKEN,
        ...pluginEnv({ "token-endpoint": server.url, debug: true, retries: 1, timeout: 30 }),
      },
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Response(child.stdout).text();
    // Should the line come only at the end, the retry is let go after 20 s and the test fails.
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      release();
    }, 20_000);
    let seen = "";
    let live: boolean | undefined;
    const decoder = new TextDecoder();
    for await (const chunk of child.stderr) {
      seen += decoder.decode(chunk, { stream: true });
      if (live === undefined && /debug: .*503/.test(seen)) {
        live = !timedOut;
        clearTimeout(timer);
        release();
      }
    }
    clearTimeout(timer);
    assert.equal(live, true, "the debug line came only once the exchange was over");
    const status = await child.status;
    assert.equal(status.code, 1);
    assert.match(await stdout, /\^\^\^ \+\+\+\n$/);
  } finally {
    release();
    await Deno.remove(work, { recursive: true });
  }
});

Deno.test("a failure shows the plugin's words and the OIDC token's iss, sub and aud whole, however long", async () => {
  const sub =
    "organization:acme-platform-engineering:pipeline:infrastructure-deploy-production:ref:refs/heads/release/2026-12:commit:9f3182061f1e2cca:step:apply";
  const aud = "https://sts.platform.internal.example.com";
  assert.ok(sub.length >= 130 && aud.length >= 40);
  const token = fakeJwt({ ...BUILDKITE_CLAIMS, sub, aud }, "U0lHTkFUVVJFLU9GLUEtTE9ORy1UT0tFTg");
  await using server = startTokenEndpoint(() =>
    oauthError(400, {
      error: "invalid_grant",
      error_description: `no trust policy matches sub ${"x".repeat(600)}`,
    })
  );
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, audience: aud },
    env: { STANDIN_TOKEN: token },
  });
  assert.equal(result.code, 1);
  const [first, second] = result.stderr.trimEnd().split("\n");
  // The server's words are capped (at 500 characters), the plugin's never.
  assert.match(
    first!,
    /^🚨 Token exchange failed: Token endpoint refused the exchange: HTTP 400, error "invalid_grant": "no trust policy matches sub x+…"; check that the endpoint's trust policy accepts the token's iss, sub and aud below$/,
  );
  assert.equal(
    second,
    `   Buildkite OIDC token: iss="https://agent.buildkite.com" sub="${sub}" aud="${aud}"`,
  );
});

Deno.test("ca-file: an https endpoint of a private CA is trusted with it; without it the hook says the certificate is not trusted and to set ca-file", async () => {
  await using server = startTokenEndpoint(issued, { cert: TEST_CERT, key: TEST_KEY });
  const dir = await Deno.makeTempDir({ prefix: "ca-file-hook-" });
  try {
    await Deno.writeTextFile(`${dir}/internal-ca.pem`, TEST_CERT);
    // A relative ca-file is the checkout's (the working directory).
    const trusted = await runHooks(["environment"], {
      options: { "token-endpoint": server.url, "ca-file": "internal-ca.pem" },
      cwd: dir,
    });
    assert.equal(trusted.code, 0, trusted.stderr);
    assert.equal(trusted.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);

    const untrusted = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
    });
    assert.equal(untrusted.code, 1);
    assert.match(
      untrusted.stderr,
      /^🚨 Token exchange failed: Token endpoint "https:\/\/127\.0\.0\.1:\d+\/token" presented a certificate that is not trusted here, from a CA this machine does not know \(.*UnknownIssuer.*\); if your organisation's own CA issued it, set ca-file to that CA's certificate \(a PEM file\)\n {3}Buildkite OIDC token: iss=/,
    );
    assert.equal(server.requests.length, 1, "the untrusted endpoint was sent a request");

    const missing = await runHooks(["environment"], {
      options: { "token-endpoint": server.url, "ca-file": `${dir}/missing.pem` },
    });
    assert.equal(missing.code, 2);
    assert.match(
      missing.stderr,
      /^🚨 Configuration error: ca-file is ".*\/missing\.pem", which cannot be read \(No such file or directory/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
