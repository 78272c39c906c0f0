// The hooks on a shared agent host and against pipeline.yml mistakes: token files private, atomic,
// never through links and never over files the plugin did not write; pre-exit removes only what
// this job's hook recorded; configuration mistakes are exit 2 naming the pipeline.yml option.
// Each test works in temporary directories it made, which stand for the agent's shared TMPDIR.

import assert from "node:assert/strict";
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

Deno.test("token-file: true writes a 0600 file in a private 0700 per-entry directory that pre-exit removes", async () => {
  await using server = startTokenEndpoint(issued);
  await using tmp = await tempDir();
  const options = { "token-endpoint": server.url, "token-file": true, "env-var": "STS_TOKEN" };
  const env = { TMPDIR: tmp.path };
  const result = await runHooks(["environment"], { options, env });
  assert.equal(result.code, 0, result.stderr);
  const jobDir = `${tmp.path}/token-exchange-${JOB_ID}`;
  const file = `${jobDir}/1/token`;
  assert.equal(result.exported["STS_TOKEN_FILE"], file);
  assert.equal(await Deno.readTextFile(file), ISSUED_TOKEN);
  assert.deepEqual(
    [await mode(jobDir), await mode(`${jobDir}/1`), await mode(file)],
    [0o700, 0o700, 0o600],
  );
  assert.deepEqual((await listTree(tmp.path)).sort(), [
    `token-exchange-${JOB_ID}/`,
    `token-exchange-${JOB_ID}/1/`,
    `token-exchange-${JOB_ID}/1/entry.json`,
    `token-exchange-${JOB_ID}/1/options`,
    `token-exchange-${JOB_ID}/1/token`,
    `token-exchange-${JOB_ID}/job-pid`,
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

/** Every file below DIR with its mode and text (a link as its target), to compare byte for byte. */
async function snapshot(dir: string): Promise<string[]> {
  const shown: string[] = [];
  for (const name of (await listTree(dir)).sort()) {
    const path = `${dir}/${name}`;
    const info = await Deno.lstat(path);
    shown.push(
      info.isSymlink
        ? `${name} -> ${await Deno.readLink(path)}`
        : info.isFile
        ? `${name} ${(info.mode! & 0o7777).toString(8)} ${await Deno.readTextFile(path)}`
        : `${name} ${(info.mode! & 0o7777).toString(8)}`,
    );
  }
  return shown;
}

Deno.test("an explicit token-file that already exists is refused and left exactly as it was, pre-exit included", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using checkout = await tempDir();
  await using tmp = await tempDir();
  const file = `${checkout.path}/id_ed25519`;
  const options = { "token-endpoint": server.url, "token-file": file };
  const refused =
    `🚨 Configuration error: token-file ${file} already exists, and this plugin never replaces a file it did not create in this job: if an earlier job left it, remove it; else choose another path, or token-file: true for a private one\n`;
  const cases: [string, () => Promise<unknown>][] = [
    // A stand-in for ~/.ssh/id_ed25519, ~/.netrc or ~/.docker/config.json: the user's own.
    [
      "a 0600 file of this user",
      () => Deno.writeTextFile(file, "-----BEGIN OPENSSH PRIVATE KEY-----\n", { mode: 0o600 }),
    ],
    [
      "a file another job or user made",
      () => Deno.writeTextFile(file, "someone else's", { mode: 0o644 }),
    ],
    ["a symbolic link", async () => {
      await Deno.writeTextFile(`${checkout.path}/target`, "not yours");
      await Deno.symlink(`${checkout.path}/target`, file);
    }],
    ["a dangling symbolic link", () => Deno.symlink(`${checkout.path}/nowhere`, file)],
    ["a directory", () => Deno.mkdir(file)],
  ];
  for (const [name, make] of cases) {
    await t.step(name, async () => {
      await make();
      const before = await snapshot(checkout.path);
      const result = await runHooks(["environment", "pre-exit"], {
        options,
        env: { TMPDIR: tmp.path },
      });
      assert.deepEqual([result.code, result.stderr], [2, refused]);
      assert.deepEqual(await snapshot(checkout.path), before);
      // Nothing was asked of the endpoint with the OIDC token.
      assert.equal(server.requests.length, 0);
      // And pre-exit, on its own, removes nothing either.
      const ended = await runHooks(["pre-exit"], { options, env: { TMPDIR: tmp.path } });
      assert.equal(ended.code, 0, ended.stderr);
      assert.deepEqual(await snapshot(checkout.path), before);
      await Deno.remove(checkout.path, { recursive: true });
      await Deno.mkdir(checkout.path);
    });
  }
});

Deno.test("an explicit token-file is created where nothing is, whole, with nothing left beside it", async () => {
  await using server = startTokenEndpoint(issued);
  await using checkout = await tempDir();
  await using tmp = await tempDir();
  const file = `${checkout.path}/token`;
  const options = { "token-endpoint": server.url, "token-file": file };
  const result = await runHooks(["environment"], { options, env: { TMPDIR: tmp.path } });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(await Deno.readTextFile(file), ISSUED_TOKEN);
  assert.equal(await mode(file), 0o600);
  assert.deepEqual(await listTree(checkout.path), ["token"]);
  const ended = await runHooks(["pre-exit"], { options, env: { TMPDIR: tmp.path } });
  assert.equal(ended.code, 0, ended.stderr);
  assert.deepEqual(await listTree(checkout.path), []);
  assert.deepEqual(await listTree(tmp.path), []);
});

Deno.test("token-file: ~/ is the home directory, and a missing directory there is made private", async () => {
  await using server = startTokenEndpoint(issued);
  await using home = await tempDir();
  await using tmp = await tempDir();
  const options = { "token-endpoint": server.url, "token-file": "~/.kube/token" };
  const env = { TMPDIR: tmp.path, HOME: home.path };
  const result = await runHooks(["environment"], { options, env, cwd: tmp.path });
  assert.equal(result.code, 0, result.stderr);
  assert.equal(result.exported["FEDERATED_ACCESS_TOKEN_FILE"], `${home.path}/.kube/token`);
  assert.equal(await Deno.readTextFile(`${home.path}/.kube/token`), ISSUED_TOKEN);
  assert.equal(await mode(`${home.path}/.kube`), 0o700);
  // No literal ~ directory in the checkout.
  assert.deepEqual((await listTree(tmp.path)).filter((name) => name.startsWith("~")), []);
  await runHooks(["pre-exit"], { options, env });
  assert.deepEqual(await listTree(`${home.path}/.kube`), []);
});

Deno.test("a token-file in a directory other users may write is refused, unless the sticky bit guards it", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using shared = await tempDir();
  await using tmp = await tempDir();
  const file = `${shared.path}/token`;
  const options = { "token-endpoint": server.url, "token-file": file };
  const env = { TMPDIR: tmp.path };
  await t.step("world-writable, no sticky bit", async () => {
    await Deno.chmod(shared.path, 0o777);
    const result = await runHooks(["environment"], { options, env });
    assert.deepEqual([result.code, result.stderr], [
      2,
      `🚨 Configuration error: Cannot write token-file ${file}: other users may write its directory ${shared.path} (mode 0777, without the sticky bit) and so replace the token; choose a directory only you may write, or token-file: true for a private one\n`,
    ]);
    assert.deepEqual(await listTree(shared.path), []);
    assert.equal(server.requests.length, 0);
  });
  await t.step("world-writable with the sticky bit, as /tmp is", async () => {
    await Deno.chmod(shared.path, 0o1777);
    const result = await runHooks(["environment", "pre-exit"], { options, env });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.exported["FEDERATED_ACCESS_TOKEN_FILE"], file);
  });
  await Deno.chmod(shared.path, 0o700);
});

Deno.test("pre-exit removes the token-file only while it is the file the hook made, never a link or file the job put in its place", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using checkout = await tempDir();
  await using tmp = await tempDir();
  const file = `${checkout.path}/token`;
  const options = { "token-endpoint": server.url, "token-file": file };
  const env = { TMPDIR: tmp.path };
  const swaps: [string, () => Promise<void>, string][] = [
    ["a link to something precious", async () => {
      await Deno.writeTextFile(`${checkout.path}/precious`, "keep me");
      await Deno.symlink(`${checkout.path}/precious`, file);
    }, "precious"],
    [
      "a file of the job's own",
      () => Deno.writeTextFile(file, "the job's own", { mode: 0o600 }),
      "token",
    ],
  ];
  for (const [name, swap, kept] of swaps) {
    await t.step(name, async () => {
      const written = await runHooks(["environment"], { options, env });
      assert.equal(written.code, 0, written.stderr);
      await Deno.remove(file);
      await swap();
      const before = await snapshot(checkout.path);
      const cleaned = await runHooks(["pre-exit"], {
        options,
        // The job points the variable elsewhere too: pre-exit never reads it.
        env: { ...env, FEDERATED_ACCESS_TOKEN_FILE: `${checkout.path}/${kept}` },
      });
      assert.equal(cleaned.code, 0, cleaned.stderr);
      assert.match(cleaned.stderr, /token-file .*token was replaced or removed during the job/);
      assert.deepEqual(await snapshot(checkout.path), before);
      assert.deepEqual(await listTree(tmp.path), []);
      await Deno.remove(checkout.path, { recursive: true });
      await Deno.mkdir(checkout.path);
    });
  }
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

Deno.test("a private directory planted in TMPDIR under this job's name is refused before the OIDC token is sent", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using tmp = await tempDir();
  await using elsewhere = await tempDir();
  const planted = `${tmp.path}/token-exchange-${JOB_ID}`;
  const options = { "token-endpoint": server.url, "token-file": true };
  const message =
    `🚨 Cannot use the private directory ${planted}: it is not a directory this agent's user made (another job may have put it there); remove it, or set TMPDIR to a directory only this agent uses\n`;

  await t.step("a symbolic link", async () => {
    await Deno.symlink(elsewhere.path, planted);
    const result = await runHooks(["environment"], { options, env: { TMPDIR: tmp.path } });
    assert.deepEqual([result.code, result.stderr], [1, message]);
    assert.deepEqual(await listTree(elsewhere.path), []);
    assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], undefined);
    await Deno.remove(planted);
  });

  await t.step("a directory others may enter", async () => {
    await Deno.mkdir(planted);
    await Deno.chmod(planted, 0o777);
    const result = await runHooks(["environment"], { options, env: { TMPDIR: tmp.path } });
    assert.deepEqual([result.code, result.stderr], [1, message]);
    assert.deepEqual(await listTree(planted), []);
    await Deno.remove(planted);
  });

  await t.step({
    name: "another user's directory",
    ignore: !IS_ROOT, // only root can make a directory that belongs to someone else
    fn: async () => {
      await Deno.mkdir(planted, { mode: 0o700 });
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
  assert.equal(server.requests.length, 0);
});

Deno.test("a failed exchange leaves nothing in TMPDIR", async () => {
  await using server = startTokenEndpoint(() => new Response("nope", { status: 403 }));
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": server.url, "token-file": true },
  });
  assert.equal(result.code, 1);
  assert.deepEqual(result.leftovers, []);
});

Deno.test("pipeline.yml mistakes are exit 2 naming the option, and the endpoint is never asked", async (t) => {
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
      'Token endpoint (token-endpoint) "https://sts.example.com,evil.example.com/token" has a comma in its host "sts.example.com,evil.example.com": a host is one DNS name or IP address',
    ],
    [
      "a port out of range",
      { "token-endpoint": "https://sts.example.com:70000/token" },
      'Token endpoint (token-endpoint) "https://sts.example.com:70000/token" has port "70000": use a port from 1 to 65535',
    ],
    [
      "a port with a leading zero",
      { "token-endpoint": "https://sts.example.com:0443/token" },
      'Token endpoint (token-endpoint) "https://sts.example.com:0443/token" has port "0443": use a port from 1 to 65535',
    ],
    [
      "an issuer that is not a URL",
      { issuer: "accounts.google.com" },
      'Issuer (issuer) "accounts.google.com" is not an absolute URL: use a URL such as "https://sts.example.com/token"',
    ],
    [
      "a password in the endpoint",
      { "token-endpoint": "https://ci:hunter2-password@sts.example.com/token" },
      "Token endpoint (token-endpoint) must not contain a user name or password (user@host): use client-id and client-secret-env instead",
      "hunter2-password",
    ],
    [
      "a trailing line break in token-endpoint",
      { "token-endpoint": `${server.url}\n` },
      `token-endpoint is "${server.url}\\n", which has a line break or another control character in it: remove it`,
    ],
    [
      "a list for a single-value option",
      { "token-endpoint": server.url, audience: ["a", "b"] },
      "audience takes one value, not a list: give it one value",
    ],
    [
      "service-account without google-credentials",
      { "token-endpoint": server.url, "service-account": "deployer@p.iam.gserviceaccount.com" },
      "service-account has no use without google-credentials: set google-credentials: true, or remove service-account",
    ],
    [
      "client-auth without a client secret",
      { "token-endpoint": server.url, "client-auth": "post" },
      "client-auth has no use without client-secret-env: set client-secret-env, or remove client-auth",
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
      'env-var is "LD_PRELOAD", a variable the dynamic linker and the C library read: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "env-var BUILDKITE_AGENT_ACCESS_TOKEN",
      { "token-endpoint": server.url, "env-var": "BUILDKITE_AGENT_ACCESS_TOKEN" },
      'env-var is "BUILDKITE_AGENT_ACCESS_TOKEN", a variable the Buildkite agent owns: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "env-var https_proxy",
      { "token-endpoint": server.url, "env-var": "https_proxy" },
      'env-var is "https_proxy", a variable HTTP clients read as their proxy: use a name of your own such as FEDERATED_ACCESS_TOKEN',
    ],
    [
      "a control character in hook",
      { "token-endpoint": server.url, hook: "pre-command\n^^^ +++" },
      'hook is "pre-command\\n^^^ +++", which has a line break or another control character in it: remove it',
    ],
  ];
  for (const [name, options, message, secret] of cases) {
    await t.step(name, async () => {
      const result = await runHooks(["environment"], { options });
      assert.deepEqual(
        { code: result.code, stdout: result.stdout, stderr: result.stderr },
        { code: 2, stdout: "^^^ +++\n", stderr: `🚨 Configuration error: ${message}\n` },
      );
      // The agent may have been asked (its request starts with the engine), never the redactor.
      assert.deepEqual(result.agentCalls.filter((call) => call[0] !== "oidc"), []);
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

Deno.test("the hook refuses an exchange option's mistake in the CLI's words, and never asks the endpoint", async (t) => {
  await using server = startTokenEndpoint(issued);
  const cases: [string, Record<string, string | string[]>][] = [
    ["a timeout that is not a number", { timeout: "soon" }],
    ["a timeout of 0", { timeout: "0" }],
    ["a timeout over an hour", { timeout: "3600.5" }],
    ["retries that are not a number", { retries: "many" }],
    ["too many retries", { retries: "101" }],
    [
      "client-auth in capitals",
      { "client-auth": "Basic", "client-id": "ci", "client-secret-env": "STS_SECRET" },
    ],
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
        { code: result.code, stderr: result.stderr },
        {
          code: 2,
          stderr: `🚨 Configuration error: ${cliMessage.replace(/^token-exchange: /, "")}\n`,
        },
      );
    });
  }
  assert.equal(server.requests.length, 0);
});

Deno.test("the hook takes https://my_host.example.com/token as the CLI does, and lets the engine reach that host only", async () => {
  // The proxy stands in for the network: the request for the host reaches it as a CONNECT, which
  // it refuses, so the job fails trying to reach the host, not on the option.
  await using proxy = await startProxy();
  const result = await runHooks(["environment"], {
    options: { "token-endpoint": "https://my_host.example.com/token", retries: "0" },
    env: { HTTPS_PROXY: proxy.url },
  });
  assert.equal(result.code, 1);
  assert.match(
    result.stderr,
    /^🚨 Token exchange failed: Cannot reach token endpoint "https:\/\/my_host\.example\.com\/token"/,
  );
  assert.deepEqual(proxy.lines(), ["CONNECT my_host.example.com:443 HTTP/1.1"]);
});

Deno.test("a tab in subject-token-type is a configuration error, never a broken Google credentials file", async () => {
  const result = await runHooks(["environment"], {
    options: {
      "google-credentials": true,
      "target-audience":
        "//iam.googleapis.com/projects/1/locations/global/workloadIdentityPools/bk/providers/bk",
      "subject-token-type": "urn:ietf:params:oauth:token-type:jwt\t",
    },
  });
  assert.deepEqual([result.code, result.stderr, result.leftovers], [
    2,
    '🚨 Configuration error: subject-token-type is "urn:ietf:params:oauth:token-type:jwt\\t", which has a line break or another control character in it: remove it\n',
    [],
  ]);
});

Deno.test("client-secret-env never names a variable this plugin exports", async (t) => {
  await using server = startTokenEndpoint(issued);
  await using tmp = await tempDir();
  const env = { TMPDIR: tmp.path, FEDERATED_ACCESS_TOKEN: "a token an entry issued" };
  const message =
    "🚨 Configuration error: client-secret-env names a variable this plugin exports (a token it issued, or a file's path), which is never sent as a client secret: hold the client secret in a variable of your own, such as STS_CLIENT_SECRET\n";
  const secretFrom = (name: string) => ({
    "token-endpoint": server.url,
    "env-var": "SECOND_TOKEN",
    "client-id": "ci",
    "client-secret-env": name,
  });
  await t.step("its own", async () => {
    const result = await runHooks(["environment"], {
      options: secretFrom("SECOND_TOKEN_EXPIRES_AT"),
      env: { ...env, SECOND_TOKEN_EXPIRES_AT: "2026-12-07T13:00:00Z" },
    });
    assert.deepEqual([result.code, result.stderr], [2, message]);
  });
  await t.step("an earlier entry's", async () => {
    const first = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
      env,
    });
    assert.equal(first.code, 0, first.stderr);
    const requests = server.requests.length;
    const result = await runHooks(["environment"], {
      options: secretFrom("FEDERATED_ACCESS_TOKEN"),
      env,
    });
    assert.deepEqual([result.code, result.stderr], [2, message]);
    assert.equal(server.requests.length, requests);
  });
});

Deno.test("a job killed before pre-exit leaves no token behind once this plugin's hooks run again on the host", async () => {
  await using server = startTokenEndpoint(issued);
  await using tmp = await tempDir();
  await using checkout = await tempDir();
  const file = `${checkout.path}/token`;
  // Two jobs, each with a process standing for it: one is killed, one still runs.
  const killed = new Deno.Command("sleep", { args: ["600"] }).spawn();
  const running = new Deno.Command("sleep", { args: ["600"] }).spawn();
  try {
    const first = await runHooks(["environment"], {
      options: { "token-endpoint": server.url, "token-file": file },
      env: { TMPDIR: tmp.path, TOKEN_EXCHANGE_JOB_PID: String(killed.pid) },
    });
    const second = await runHooks(["environment"], {
      options: { "token-endpoint": server.url, "token-file": true },
      env: {
        TMPDIR: tmp.path,
        BUILDKITE_JOB_ID: OTHER_JOB,
        TOKEN_EXCHANGE_JOB_PID: String(running.pid),
      },
    });
    assert.equal(first.code + second.code, 0, first.stderr + second.stderr);
    // Not this plugin's, or not this user's to judge: left alone.
    await Deno.symlink(checkout.path, `${tmp.path}/token-exchange-a-link`);
    await Deno.mkdir(`${tmp.path}/token-exchange-no-record`);
    killed.kill();
    await killed.status;
    const next = await runHooks(["environment"], {
      options: { "token-endpoint": server.url },
      env: { TMPDIR: tmp.path, BUILDKITE_JOB_ID: "01849a3c-0000-4000-8000-0000000000ff" },
    });
    assert.equal(next.code, 0, next.stderr);
    await assert.rejects(Deno.lstat(file), Deno.errors.NotFound);
    const left = (await listTree(tmp.path)).filter((path) => !/\/./.test(path)).sort();
    assert.deepEqual(left, [
      "token-exchange-01849a3c-0000-4000-8000-0000000000ff/",
      `token-exchange-${OTHER_JOB}/`,
      "token-exchange-a-link",
      "token-exchange-no-record/",
    ]);
  } finally {
    for (const process of [killed, running]) {
      try {
        process.kill();
      } catch { /* gone */ }
      await process.status;
    }
  }
});
