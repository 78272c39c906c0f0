// The hooks on a shared agent host and against pipeline.yml mistakes: token files private, atomic,
// never through links and never over files the plugin did not write; pre-exit removes only what
// this job's hook recorded; configuration mistakes are exit 2 naming the pipeline.yml option.
// Each test works in temporary directories it made, which stand for the agent's shared TMPDIR.

import assert from "node:assert/strict";
import { parse } from "yaml";
import { JOB_ID, listTree, PLUGIN_DIR, pluginEnv, runHooks } from "./_hooks.ts";
import { startLoopbackEndpoints, startProxy } from "./_proxy.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { ISSUED_TOKEN } from "./_tokens.ts";

const issued = () => tokenResponse({ access_token: ISSUED_TOKEN });
const IS_ROOT = new TextDecoder().decode(
  (await new Deno.Command("id", { args: ["-u"] }).output()).stdout,
).trim() === "0";
const OTHER_JOB = "01849a3c-0000-4000-8000-00000000b0b0";

async function mode(path: string): Promise<number> {
  return (await Deno.lstat(path)).mode! & 0o777;
}

/** A temporary directory for the test's duration, standing for TMPDIR or a job's checkout. */
async function tempDir(): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix: "hooks-security-" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

Deno.test("token-file: true writes a 0600 file in a private 0700 per-job directory that pre-exit removes", async () => {
  await using server = startTokenEndpoint(issued);
  await using tmp = await tempDir();
  const options = { "token-endpoint": server.url, "token-file": true, "env-var": "STS_TOKEN" };
  const env = { TMPDIR: tmp.path };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  const jobDir = `${tmp.path}/token-exchange-${JOB_ID}`;
  const file = `${jobDir}/STS_TOKEN/token`;
  assert.equal(result.exported["STS_TOKEN_FILE"], file);
  assert.equal(await Deno.readTextFile(file), ISSUED_TOKEN);
  assert.deepEqual(
    [await mode(jobDir), await mode(`${jobDir}/STS_TOKEN`), await mode(file)],
    [0o700, 0o700, 0o600],
  );
  assert.deepEqual(await listTree(tmp.path), [
    `token-exchange-${JOB_ID}/`,
    `token-exchange-${JOB_ID}/STS_TOKEN/`,
    `token-exchange-${JOB_ID}/STS_TOKEN/token`,
  ]);
  assert.equal(
    result.stdout.split("\n").at(-2),
    `Exported STS_TOKEN and STS_TOKEN_FILE (${file}) (expires in 60 min)`,
  );

  const cleaned = await runHooks(["pre-exit"], { options, env });
  assert.equal(cleaned.code, 0, cleaned.stderr);
  assert.deepEqual(await listTree(tmp.path), []);
});

Deno.test("two jobs sharing TMPDIR never share a token-file: true path, and each pre-exit removes only its own", async () => {
  await using server = startTokenEndpoint((_, index) =>
    tokenResponse({ access_token: `${ISSUED_TOKEN}-${index}` })
  );
  await using tmp = await tempDir();
  const options = { "token-endpoint": server.url, "token-file": true };
  const first = await runHooks(["environment"], { options, env: { TMPDIR: tmp.path } });
  const second = await runHooks(["environment"], {
    options,
    env: { TMPDIR: tmp.path, BUILDKITE_JOB_ID: OTHER_JOB },
  });
  assert.equal(first.code + second.code, 0, first.stderr + second.stderr);
  const firstFile = first.exported["FEDERATED_ACCESS_TOKEN_FILE"] ?? "";
  const secondFile = second.exported["FEDERATED_ACCESS_TOKEN_FILE"] ?? "";
  assert.notEqual(firstFile, secondFile);
  assert.equal(await Deno.readTextFile(firstFile), `${ISSUED_TOKEN}-0`);
  assert.equal(await Deno.readTextFile(secondFile), `${ISSUED_TOKEN}-1`);

  // The second job ends first: the first job's token stays.
  const ended = await runHooks(["pre-exit"], {
    options,
    env: { TMPDIR: tmp.path, BUILDKITE_JOB_ID: OTHER_JOB },
  });
  assert.equal(ended.code, 0, ended.stderr);
  assert.equal(await Deno.readTextFile(firstFile), `${ISSUED_TOKEN}-0`);
  await assert.rejects(Deno.lstat(secondFile), Deno.errors.NotFound);
});

Deno.test("an explicit token-file replaces only a 0600 token file of this user, atomically, and never follows a link", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using checkout = await tempDir();
  const file = `${checkout.path}/token`;
  const run = () =>
    runHooks(["environment"], { options: { "token-endpoint": server.url, "token-file": file } });
  const refused = (path: string) =>
    `🚨 Configuration error: token-file ${path} exists and is not a token file this plugin wrote (a 0600 regular file of this user): it was left untouched; choose another path, or token-file: true for a private one\n`;

  await t.step("a symbolic link in its place is refused and its target untouched", async () => {
    await Deno.writeTextFile(`${checkout.path}/target`, "not yours");
    await Deno.symlink(`${checkout.path}/target`, file);
    const result = await run();
    assert.deepEqual([result.code, result.stderr], [2, refused(file)]);
    assert.equal((await Deno.lstat(file)).isSymlink, true);
    assert.equal(await Deno.readTextFile(`${checkout.path}/target`), "not yours");
    assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], undefined);
    await Deno.remove(file);
    await Deno.remove(`${checkout.path}/target`);
  });

  await t.step("a file another job or user made (not 0600) is refused and untouched", async () => {
    await Deno.writeTextFile(file, "someone else's", { mode: 0o644 });
    await Deno.chmod(file, 0o644);
    const result = await run();
    assert.deepEqual([result.code, result.stderr], [2, refused(file)]);
    assert.equal(await Deno.readTextFile(file), "someone else's");
    await Deno.remove(file);
  });

  await t.step("a directory in its place is refused", async () => {
    await Deno.mkdir(file);
    const result = await run();
    assert.deepEqual([result.code, result.stderr], [2, refused(file)]);
    await Deno.remove(file);
  });

  await t.step(
    "a token file an earlier job left (0600, this user's) is replaced by a new file",
    async () => {
      await Deno.writeTextFile(file, "stale token", { mode: 0o600 });
      const before = (await Deno.lstat(file)).ino;
      const result = await run();
      assert.equal(result.code, 0, result.stderr);
      assert.equal(await Deno.readTextFile(file), ISSUED_TOKEN);
      assert.equal(await mode(file), 0o600);
      // A rename of a new file, not a rewrite of the old one: a reader never sees half a token.
      assert.notEqual((await Deno.lstat(file)).ino, before);
      // No temporary file is left beside it.
      assert.deepEqual(await listTree(checkout.path), ["token"]);
    },
  );
});

Deno.test("pre-exit removes only the token-file its hook recorded, never a link the job put in its place", async () => {
  await using server = startTokenEndpoint(issued);
  await using checkout = await tempDir();
  await using tmp = await tempDir();
  const file = `${checkout.path}/token`;
  const options = { "token-endpoint": server.url, "token-file": file };
  const env = { TMPDIR: tmp.path };
  const written = await runHooks(["environment"], { options, env });
  assert.equal(written.code, 0, written.stderr);
  // The job swaps the token file for a link to something precious, and points the variable elsewhere.
  await Deno.remove(file);
  await Deno.writeTextFile(`${checkout.path}/precious`, "keep me");
  await Deno.symlink(`${checkout.path}/precious`, file);
  const cleaned = await runHooks(["pre-exit"], {
    options,
    env: { ...env, FEDERATED_ACCESS_TOKEN_FILE: `${checkout.path}/precious` },
  });
  assert.equal(cleaned.code, 0, cleaned.stderr);
  assert.equal(await Deno.readTextFile(`${checkout.path}/precious`), "keep me");
  assert.equal((await Deno.lstat(file)).isSymlink, true);
  assert.deepEqual(await listTree(tmp.path), []);
});

Deno.test("hook: pre-command cleans up in pre-exit the same way", async () => {
  await using server = startTokenEndpoint(issued);
  await using checkout = await tempDir();
  await using tmp = await tempDir();
  const file = `${checkout.path}/token`;
  const options = { "token-endpoint": server.url, "token-file": file, hook: "pre-command" };
  const result = await runHooks(["environment", "pre-command", "pre-exit"], {
    options,
    env: { TMPDIR: tmp.path },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN_FILE"], file);
  await assert.rejects(Deno.lstat(file), Deno.errors.NotFound);
  assert.deepEqual(await listTree(tmp.path), []);
});

Deno.test("a private directory planted in TMPDIR under this job's name is refused, not written through", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using tmp = await tempDir();
  await using elsewhere = await tempDir();
  const planted = `${tmp.path}/token-exchange-${JOB_ID}`;
  const options = { "token-endpoint": server.url, "token-file": true };
  const message =
    `🚨 Cannot use the private directory ${planted}: it is not a directory this agent's user made (another job may have put it there)\n   Remove it, or set TMPDIR to a directory only this agent uses\n`;

  await t.step("a symbolic link", async () => {
    await Deno.symlink(elsewhere.path, planted);
    const result = await runHooks(["environment"], { options, env: { TMPDIR: tmp.path } });
    assert.deepEqual([result.code, result.stderr], [1, message]);
    assert.deepEqual(await listTree(elsewhere.path), []);
    assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], undefined);
    await Deno.remove(planted);
  });

  await t.step({
    name: "another user's directory",
    ignore: !IS_ROOT, // only root can make a directory that belongs to someone else
    fn: async () => {
      await Deno.mkdir(planted, { mode: 0o777 });
      await Deno.chown(planted, 65534, 65534);
      const result = await runHooks(["environment"], { options, env: { TMPDIR: tmp.path } });
      assert.deepEqual([result.code, result.stderr], [1, message]);
      assert.deepEqual(await listTree(planted), []);
      // pre-exit leaves what is not this job's alone too.
      await runHooks(["pre-exit"], { options, env: { TMPDIR: tmp.path } });
      assert.equal((await Deno.lstat(planted)).isDirectory, true);
      await Deno.remove(planted);
    },
  });
});

Deno.test("a failed exchange leaves nothing in TMPDIR", async () => {
  await using server = startTokenEndpoint(() => new Response("nope", { status: 403 }));
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, "token-file": true },
  });
  assert.equal(result.code, 1);
  assert.deepEqual(result.leftovers, []);
});

Deno.test("pipeline.yml mistakes are exit 2 naming the option, before the agent or the endpoint is asked", async (t) => {
  await using server = startTokenEndpoint(issued);
  const cases: [string, Record<string, string | string[]>, string, string?][] = [
    [
      "a misspelt option",
      { "token-endpoint": server.url, "target-audiance": "https://api.example.com" },
      "target-audiance is not an option of this plugin: did you mean target-audience?",
    ],
    [
      "a misspelt list option",
      { "token-endpoint": server.url, scopes: ["read", "write"] },
      "scopes is not an option of this plugin: did you mean scope?",
    ],
    [
      "an option of another plugin",
      { "token-endpoint": server.url, "image": "node:22" },
      "image is not an option of this plugin: see the plugin's README for the options",
    ],
    [
      "two hosts in token-endpoint",
      { "token-endpoint": "https://sts.example.com,evil.example.com/token" },
      'token-endpoint is "https://sts.example.com,evil.example.com/token", whose host or port is not valid: use a URL such as https://sts.example.com/token',
    ],
    [
      "a port out of range",
      { "token-endpoint": "https://sts.example.com:70000/token" },
      'token-endpoint is "https://sts.example.com:70000/token", whose host or port is not valid: use a URL such as https://sts.example.com/token',
    ],
    [
      "an issuer that is not a URL",
      { issuer: "accounts.google.com" },
      'issuer is "accounts.google.com", not an http or https URL: use a URL such as https://issuer.example.com',
    ],
    [
      "a password in the endpoint",
      { "token-endpoint": "https://ci:hunter2-password@sts.example.com/token" },
      "token-endpoint has a user name or password in it: remove them (use client-id and client-secret-env for client credentials)",
      "hunter2-password",
    ],
    [
      "the secret itself in client-secret-env",
      {
        "token-endpoint": server.url,
        "client-id": "ci",
        "client-secret-env": "xK9#mQ2$vL7!pasted-secret",
      },
      "client-secret-env is not an environment variable name (letters, digits and _): set it to the name of the variable that holds the secret, such as STS_CLIENT_SECRET, not to the secret itself",
      "pasted-secret",
    ],
    [
      "env-var PATH",
      { "token-endpoint": server.url, "env-var": "PATH" },
      'env-var is "PATH", a variable the shell and the rest of the job rely on: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "env-var LD_PRELOAD",
      { "token-endpoint": server.url, "env-var": "LD_PRELOAD" },
      'env-var is "LD_PRELOAD", a variable the dynamic linker reads: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "env-var BUILDKITE_AGENT_ACCESS_TOKEN",
      { "token-endpoint": server.url, "env-var": "BUILDKITE_AGENT_ACCESS_TOKEN" },
      'env-var is "BUILDKITE_AGENT_ACCESS_TOKEN", a variable the Buildkite agent owns: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "env-var https_proxy",
      { "token-endpoint": server.url, "env-var": "https_proxy" },
      'env-var is "https_proxy", a variable the shell and the rest of the job rely on: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "a control character in hook",
      { "token-endpoint": server.url, hook: "pre-command\n^^^ +++" },
      'hook is "pre-command?^^^ +++": use environment or pre-command',
    ],
  ];
  for (const [name, options, message, secret] of cases) {
    await t.step(name, async () => {
      const result = await runHooks(["environment"], { options });
      assert.deepEqual(
        { code: result.code, stderr: result.stderr, calls: result.agentCalls },
        { code: 2, stderr: `🚨 Configuration error: ${message}\n`, calls: [] },
      );
      assert.match(result.stdout, /\^\^\^ \+\+\+\n$/);
      if (secret !== undefined) {
        assert.ok(!result.stdout.includes(secret) && !result.stderr.includes(secret));
      }
    });
  }
  assert.equal(server.requests.length, 0);
});

Deno.test("list options set as _0, _1, … and every option plugin.yml declares are accepted", async () => {
  await using server = startTokenEndpoint(issued);
  const result = await runHooks(["environment"], {
    options: {
      "token-endpoint": server.url,
      "target-audience": ["https://a.example.com", "https://b.example.com"],
      scope: "read",
      "extra-params": ["connector_id=buildkite"],
      timeout: "5",
      retries: "1",
    },
  });
  assert.equal(result.code, 0, result.stderr);
  assert.deepEqual(server.requests[0]!.form.filter(([name]) => name === "audience"), [
    ["audience", "https://a.example.com"],
    ["audience", "https://b.example.com"],
  ]);
});

Deno.test("the hooks know exactly the options plugin.yml declares, and which of them are lists", async () => {
  const plugin = parse(await Deno.readTextFile(`${PLUGIN_DIR}/plugin.yml`)) as {
    configuration: { properties: Record<string, { type: string | string[] }> };
  };
  const upper = (name: string) => name.toUpperCase().replaceAll("-", "_");
  const properties = Object.entries(plugin.configuration.properties);
  const output = await new Deno.Command("bash", {
    args: [
      "-c",
      'source lib/plugin.bash; printf "%s\\n" "$TOKEN_EXCHANGE_OPTIONS" "$TOKEN_EXCHANGE_LIST_OPTIONS"',
    ],
    cwd: PLUGIN_DIR,
  }).output();
  const [options, lists] = new TextDecoder().decode(output.stdout).split("\n").map((line) =>
    line.trim().split(" ").sort()
  );
  assert.deepEqual(options, properties.map(([name]) => upper(name)).sort());
  assert.deepEqual(
    lists,
    properties.filter(([, spec]) => [spec.type].flat().includes("array")).map(([name]) =>
      upper(name)
    ).sort(),
  );
});

Deno.test("the hook reaches a loopback endpoint directly, whatever proxy the job's environment names", async (t) => {
  await using proxy = await startProxy();
  await using endpoints = await startLoopbackEndpoints();
  const { plain, cert, port } = endpoints;
  const cases: [string, string][] = [
    ["HTTP_PROXY", plain.url],
    ["ALL_PROXY", plain.url],
    ["HTTPS_PROXY", `https://127.0.0.1:${port}/token`],
    ["https_proxy", `https://localhost:${port}/token`],
  ];
  for (const [variable, endpoint] of cases) {
    await t.step(variable, async () => {
      const result = await runHooks(["environment"], {
        options: { "token-endpoint": endpoint, retries: "0" },
        // DENO_CERT: trust the test server's certificate, as an agent with a private CA would.
        env: { [variable]: proxy.url, NO_PROXY: "example.com", DENO_CERT: cert.path },
      });
      assert.equal(result.code, 0, result.stderr);
      assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
      assert.deepEqual(proxy.lines(), [], "the proxy was contacted");
    });
  }
});

Deno.test("the hook refuses an exchange option's mistake before asking the agent, in the CLI's words", async (t) => {
  await using server = startTokenEndpoint(issued);
  const cases: [string, Record<string, string | string[]>][] = [
    ["a timeout that is not a number", { timeout: "soon" }],
    ["a timeout of 0", { timeout: "0" }],
    ["a timeout over an hour", { timeout: "3600.5" }],
    ["retries that are not a number", { retries: "many" }],
    ["too many retries", { retries: "101" }],
    ["client-auth in capitals", { "client-auth": "Basic" }],
    ["a secret without a client ID", { "client-secret-env": "STS_SECRET" }],
    ["an extra parameter without =", { "extra-params": ["connector_id=bk", "x"] }],
    ["a resource that is not a URI", { resource: "api" }],
  ];
  for (const [name, more] of cases) {
    await t.step(name, async () => {
      const options = { "token-endpoint": server.url, ...more };
      const env = { STS_SECRET: "not-a-real-secret" };
      const cli = await new Deno.Command(Deno.execPath(), {
        args: ["run", "--allow-env", `${PLUGIN_DIR}/cli.ts`, "--subject-token-env", "NONE"],
        clearEnv: true,
        env: { ...pluginEnv(options), ...env, NO_COLOR: "1" },
      }).output();
      const cliMessage = new TextDecoder().decode(cli.stderr).split("\n")[0]!;
      assert.equal(cli.code, 2, cliMessage);
      const result = await runHooks(["environment"], { options, env });
      assert.deepEqual(
        { code: result.code, stderr: result.stderr, calls: result.agentCalls },
        {
          code: 2,
          stderr: `🚨 Configuration error: ${cliMessage.replace(/^token-exchange: /, "")}\n`,
          calls: [],
        },
      );
    });
  }
  assert.equal(server.requests.length, 0);
});
