// How the hooks run the CLI: with deno and the narrowest permissions, or, without Deno, a release
// binary that is downloaded once per version, verified against the plugin's pinned SHA-256 and
// never run unverified. The binary is a stand-in served from 127.0.0.1.

import assert from "node:assert/strict";
import { STANDIN_BIN } from "./_cli.ts";
import { defaultPath, pathWithoutDeno, PLUGIN_DIR, runHooks } from "./_hooks.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { CLIENT_SECRET, ISSUED_TOKEN } from "./_tokens.ts";
import denoJson from "../deno.json" with { type: "json" };

const issued = () => tokenResponse({ access_token: ISSUED_TOKEN });

async function bash(script: string): Promise<string> {
  const output = await new Deno.Command("bash", { args: ["-c", script], cwd: PLUGIN_DIR }).output();
  assert.ok(output.success, new TextDecoder().decode(output.stderr));
  return new TextDecoder().decode(output.stdout);
}

const TARGET = await bash('source lib/binary.bash; token_exchange_target t; printf %s "$t"');

Deno.test("the hook's target names a binary that deno task compile builds", async () => {
  const compile = await Deno.readTextFile(`${PLUGIN_DIR}/scripts/compile.bash`);
  assert.ok(compile.includes(TARGET), `scripts/compile.bash does not build ${TARGET}`);
});

Deno.test("with deno on PATH, the hook starts deno once, to run cli.ts with the narrowest permissions that work", async () => {
  await using server = startTokenEndpoint(issued);
  const bin = await Deno.makeTempDir();
  try {
    await Deno.writeTextFile(
      `${bin}/deno`,
      `#!/usr/bin/env bash\nprintf '%s\\n' "$@" -- "SSLKEYLOGFILE=\${SSLKEYLOGFILE-unset}" >>"$DENO_ARGS_LOG"\nexec ${
        JSON.stringify(Deno.execPath())
      } "$@"\n`,
      { mode: 0o755 },
    );
    const result = await runHooks(["environment"], {
      options: {
        "token-endpoint": server.url,
        "client-id": "ci",
        "client-secret-env": "STS_SECRET",
      },
      // The job's environment may ask TLS libraries to log session keys: never for the exchange.
      env: {
        STS_SECRET: CLIENT_SECRET,
        DENO_ARGS_LOG: `${bin}/args`,
        SSLKEYLOGFILE: `${bin}/keys`,
      },
      path: [bin, ...defaultPath()],
    });
    assert.equal(result.code, 0, result.stderr);
    assert.equal(result.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
    // One start of deno in all: nothing else (no version check, no decoding) on the way. It may
    // reach the endpoint's host, read and write the job's private directory, read the options,
    // the client secret's variable, those that name an AWS session and those that say where the
    // AWS tools would call STS and with which credentials, and nothing else.
    const jobDir = `${result.privateDir}`;
    assert.deepEqual((await Deno.readTextFile(`${bin}/args`)).trimEnd().split("\n"), [
      "run",
      "--no-config",
      "--no-lock",
      "--no-remote",
      "--no-prompt",
      `--allow-net=${new URL(server.url).host}`,
      `--allow-read=${jobDir}`,
      `--allow-write=${jobDir}`,
      "--allow-sys=uid,gid",
      "--allow-env=BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*,NO_PROXY,no_proxy,HOME,BUILDKITE_JOB_ID,BUILDKITE_PIPELINE_SLUG,BUILDKITE_BUILD_NUMBER,BUILDKITE_STEP_KEY,BUILDKITE_TIMEOUT,TOKEN_EXCHANGE_GOOGLE_IAM_URL,AWS_ENDPOINT_URL_STS,AWS_ENDPOINT_URL,AWS_REGION,AWS_DEFAULT_REGION,AWS_ACCESS_KEY_ID,AWS_SECRET_ACCESS_KEY,AWS_SESSION_TOKEN,AWS_PROFILE,AWS_DEFAULT_PROFILE,STS_SECRET",
      `${PLUGIN_DIR}/cli.ts`,
      "--plugin",
      "hook",
      jobDir,
      "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_CLIENT_ID,BUILDKITE_PLUGIN_TOKEN_EXCHANGE_CLIENT_SECRET_ENV,BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT",
      "oidc",
      "request-token",
      "--audience",
      "buildkite",
      "--",
      "SSLKEYLOGFILE=unset",
    ]);
    await assert.rejects(Deno.stat(`${bin}/keys`), Deno.errors.NotFound);
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
});

Deno.test("with issuer, the hook allows only the issuer's host and says to set token-endpoint for another", async () => {
  await using sts = startTokenEndpoint(issued);
  await using issuer = startTokenEndpoint(() =>
    Response.json({ issuer: issuer.origin, token_endpoint: sts.url })
  );
  const result = await runHooks(["environment"], { options: { issuer: issuer.origin } });
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr.split("\n")[0],
    `🚨 Token exchange failed: The discovered token endpoint "${sts.url}" is not on the issuer's host "${
      new URL(issuer.origin).host
    }", and this run may reach only that: set token-endpoint to it instead of issuer`,
  );
  assert.equal(sts.requests.length, 0);

  await using sameHost = startTokenEndpoint((request) =>
    request.method === "GET"
      ? Response.json({ issuer: sameHost.origin, token_endpoint: sameHost.url })
      : issued()
  );
  const ok = await runHooks(["environment"], { options: { issuer: sameHost.origin } });
  assert.equal(ok.code, 0, ok.stderr);
  assert.equal(ok.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
});

/** A plugin checkout without Deno's help: hooks, lib, deno.json and, for a release, dist/SHA256SUMS. */
async function pluginCopy(checksum: string | undefined): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "plugin-copy-" });
  await bash(`cp -R hooks lib deno.json ${JSON.stringify(dir)}/`);
  if (checksum !== undefined) {
    await Deno.mkdir(`${dir}/dist`);
    await Deno.writeTextFile(`${dir}/dist/SHA256SUMS`, `${checksum}  token-exchange-${TARGET}\n`);
  }
  return dir;
}

// What the release binary does, as far as the hook can tell: say what to export, and note each run.
const ARTIFACT = new TextEncoder().encode(
  `#!/usr/bin/env bash\ncat >/dev/null\necho run >>"$ARTIFACT_LOG"\nprintf 'export FEDERATED_ACCESS_TOKEN=%s\\nok\\n' "$ARTIFACT_TOKEN"\n`,
);
const ARTIFACT_SHA256 = Array.from(
  new Uint8Array(await crypto.subtle.digest("SHA-256", ARTIFACT)),
  (byte) => byte.toString(16).padStart(2, "0"),
).join("");

/** The environment hook of PLUGIN on a machine without Deno, the release binary served by MIRROR. */
function runWithoutDeno(
  plugin: string,
  noDeno: string,
  mirror: string,
  cache: string,
  log: string,
) {
  return runHooks(["environment"], {
    pluginDir: plugin,
    options: { "token-endpoint": "https://sts.example.com/token" },
    env: {
      TOKEN_EXCHANGE_DOWNLOAD_URL: mirror,
      TOKEN_EXCHANGE_CACHE_DIR: cache,
      ARTIFACT_LOG: log,
      ARTIFACT_TOKEN: ISSUED_TOKEN,
    },
    path: [STANDIN_BIN, noDeno],
  });
}

/** The directories of a run without Deno, removed with it. */
async function withoutDeno(checksum: string | undefined) {
  const noDeno = await pathWithoutDeno();
  const plugin = await pluginCopy(checksum);
  const cache = await Deno.makeTempDir({ prefix: "binary-cache-" });
  const logs = await Deno.makeTempDir({ prefix: "binary-runs-" });
  return {
    noDeno,
    plugin,
    cache,
    log: `${logs}/runs`,
    binary: `${cache}/token-exchange-${TARGET}-${checksum}`,
    async [Symbol.asyncDispose]() {
      for (const dir of [noDeno, plugin, cache, logs]) {
        await Deno.chmod(dir, 0o700).catch(() => {});
        await Deno.remove(dir, { recursive: true });
      }
    },
  };
}

const runs = (log: string) => Deno.readTextFile(log).catch(() => "");

Deno.test("without deno, the hook downloads the release binary once, verifies it and runs it, read-only, without hashing it again", async () => {
  await using mirror = startTokenEndpoint((request) =>
    request.path === `/v${denoJson.version}/token-exchange-${TARGET}`
      ? new Response(ARTIFACT)
      : new Response("Not Found", { status: 404 })
  );
  await using dirs = await withoutDeno(ARTIFACT_SHA256);
  const run = () => runWithoutDeno(dirs.plugin, dirs.noDeno, mirror.origin, dirs.cache, dirs.log);
  const first = await run();
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.exported["FEDERATED_ACCESS_TOKEN"], ISSUED_TOKEN);
  assert.match(
    first.stdout,
    new RegExp(
      `Deno is not installed: downloading token-exchange v${denoJson.version} for ${TARGET} \\(once per version\\)`,
    ),
  );
  assert.equal((await Deno.stat(dirs.binary)).mode! & 0o777, 0o500);

  const second = await run();
  assert.equal(second.code, 0, second.stderr);
  assert.doesNotMatch(second.stdout, /downloading/);
  assert.equal(mirror.requests.length, 1);
  assert.equal(await runs(dirs.log), "run\nrun\n");
  assert.deepEqual([...Deno.readDirSync(dirs.cache)].map((e) => e.name), [
    `token-exchange-${TARGET}-${ARTIFACT_SHA256}`,
  ]);
});

Deno.test("without deno, the hook never runs or caches a binary whose SHA-256 does not match", async () => {
  await using mirror = startTokenEndpoint(() => new Response(ARTIFACT));
  const wrong = "0".repeat(64);
  await using dirs = await withoutDeno(wrong);
  const result = await runWithoutDeno(
    dirs.plugin,
    dirs.noDeno,
    mirror.origin,
    dirs.cache,
    dirs.log,
  );
  assert.equal(result.code, 1);
  assert.match(result.stdout, /\^\^\^ \+\+\+\n$/);
  assert.equal(
    result.stderr.split("\n")[0],
    `🚨 The downloaded token-exchange binary has SHA-256 ${ARTIFACT_SHA256}, not the ${wrong} this plugin version pins: it was not run`,
  );
  assert.equal(await runs(dirs.log), "");
  assert.deepEqual([...Deno.readDirSync(dirs.cache)], []);
  // The agent's request starts with the search for the engine; its token is never used.
  assert.deepEqual(result.agentCalls.filter((call) => call[0] !== "oidc"), []);
});

Deno.test("without deno, a failed download fails the job with what to do", async () => {
  await using mirror = startTokenEndpoint(() => new Response("Not Found", { status: 404 }));
  await using dirs = await withoutDeno(ARTIFACT_SHA256);
  const result = await runWithoutDeno(
    dirs.plugin,
    dirs.noDeno,
    `${mirror.origin}/`,
    dirs.cache,
    dirs.log,
  );
  assert.equal(result.code, 1);
  const url = `${mirror.origin}/v${denoJson.version}/token-exchange-${TARGET}`;
  assert.match(
    result.stderr,
    new RegExp(`^🚨 Cannot download the token-exchange binary from ${url}: curl: \\(22\\) .*404`),
  );
  assert.match(
    result.stderr,
    /\n {3}Check the agent can reach it, set TOKEN_EXCHANGE_DOWNLOAD_URL to a mirror, or install Deno 2/,
  );
  assert.deepEqual([...Deno.readDirSync(dirs.cache)], []);
});

Deno.test("without deno, a ref with no release binary says how to install Deno", async () => {
  await using mirror = startTokenEndpoint(() => new Response(ARTIFACT));
  await using dirs = await withoutDeno(undefined);
  const result = await runWithoutDeno(
    dirs.plugin,
    dirs.noDeno,
    mirror.origin,
    dirs.cache,
    dirs.log,
  );
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `🚨 Deno is not installed, and this plugin ref has no release binary (only release tags such as v${denoJson.version} have them): install Deno 2 on the agent (https://docs.deno.com/runtime/getting_started/installation/), which the plugin then uses directly, or pin the plugin to a release tag\n`,
  );
  assert.equal(mirror.requests.length, 0);
});

const IS_ROOT = Deno.uid() === 0;

Deno.test("without deno, the hook runs the cached binary only while no other user could have changed it since it was verified", async (t) => {
  await using mirror = startTokenEndpoint(() => new Response(ARTIFACT));
  await using dirs = await withoutDeno(ARTIFACT_SHA256);
  const run = () => runWithoutDeno(dirs.plugin, dirs.noDeno, mirror.origin, dirs.cache, dirs.log);
  assert.equal((await run()).code, 0);
  const refused = (path: string) =>
    `🚨 The token-exchange binary ${dirs.binary} was not run: ${path} is a link, or belongs to another user, or another user may write it, who could change the binary after it was verified\n   Set TOKEN_EXCHANGE_CACHE_DIR to a directory only this agent's user may write, or install Deno 2 on the agent (https://docs.deno.com/runtime/getting_started/installation/), which the plugin then uses directly\n`;
  const refusedRun = async (path: string) => {
    const result = await run();
    assert.deepEqual([result.code, result.stderr], [2, refused(path)]);
    assert.deepEqual(result.agentCalls.filter((call) => call[0] !== "oidc"), []);
    assert.equal(await runs(dirs.log), "run\n");
  };
  await t.step("a binary others may write", async () => {
    await Deno.chmod(dirs.binary, 0o722);
    await refusedRun(dirs.binary);
    await Deno.chmod(dirs.binary, 0o500);
  });
  await t.step("a link in its place, even to a good copy", async () => {
    await Deno.writeFile(`${dirs.cache}/good`, ARTIFACT, { mode: 0o500 });
    await Deno.rename(dirs.binary, `${dirs.cache}/kept`);
    await Deno.symlink(`${dirs.cache}/good`, dirs.binary);
    await refusedRun(dirs.binary);
    await Deno.remove(dirs.binary);
    await Deno.remove(`${dirs.cache}/good`);
    await Deno.rename(`${dirs.cache}/kept`, dirs.binary);
  });
  await t.step("a cache directory others may write, without the sticky bit", async () => {
    await Deno.chmod(dirs.cache, 0o777);
    await refusedRun(dirs.cache);
    await Deno.chmod(dirs.cache, 0o700);
  });
  await t.step({
    name: "a binary or a cache of another user's",
    ignore: !IS_ROOT, // only root can give a file to someone else
    fn: async () => {
      for (const path of [dirs.binary, dirs.cache]) {
        await Deno.chown(path, 65534, 65534);
        await refusedRun(path);
        await Deno.chown(path, Deno.uid()!, Deno.gid()!);
      }
    },
  });
  await t.step({
    name: "and another user cannot change what it accepts",
    ignore: !IS_ROOT,
    fn: async () => {
      // The race that hashing by path left open: another user renames a program of theirs into
      // place after the check. As nobody, with setpriv, that user finds no way in.
      const attacker = await new Deno.Command("setpriv", {
        args: [
          "--reuid=65534",
          "--regid=65534",
          "--clear-groups",
          "bash",
          "-c",
          'printf evil >"$1.x" || true; mv -f /bin/true "$1" 2>&1 || true',
          "_",
          dirs.binary,
        ],
        stdout: "piped",
      }).output();
      assert.match(new TextDecoder().decode(attacker.stdout), /Permission denied/);
      assert.equal((await run()).code, 0);
      assert.equal(await runs(dirs.log), "run\nrun\n");
    },
  });
});

Deno.test("without deno, a shared cache another user may write gets no download, and a directory above it counts too", async () => {
  await using mirror = startTokenEndpoint(() => new Response(ARTIFACT));
  await using dirs = await withoutDeno(ARTIFACT_SHA256);
  const shared = `${dirs.cache}/shared`;
  await Deno.mkdir(`${shared}/cache`, { recursive: true });
  await Deno.chmod(shared, 0o777);
  const result = await runWithoutDeno(
    dirs.plugin,
    dirs.noDeno,
    mirror.origin,
    `${shared}/cache`,
    dirs.log,
  );
  assert.equal(result.code, 2);
  assert.equal(
    result.stderr.split("\n")[0],
    `🚨 The token-exchange binary was not downloaded into ${shared}/cache: ${shared} is a link, or belongs to another user, or another user may write it, who could change the binary after it was verified`,
  );
  assert.equal(mirror.requests.length, 0);
});

Deno.test("without deno, a cache directory that cannot be made fails the hook with one clear line", async () => {
  await using mirror = startTokenEndpoint(() => new Response(ARTIFACT));
  await using dirs = await withoutDeno(ARTIFACT_SHA256);
  await Deno.writeTextFile(`${dirs.cache}/file`, "");
  const result = await runWithoutDeno(
    dirs.plugin,
    dirs.noDeno,
    mirror.origin,
    `${dirs.cache}/file`,
    dirs.log,
  );
  assert.equal(result.code, 1);
  assert.equal(
    result.stderr,
    `🚨 Cannot create the binary cache ${dirs.cache}/file: set TOKEN_EXCHANGE_CACHE_DIR to a writable directory, or install Deno 2 on the agent (https://docs.deno.com/runtime/getting_started/installation/), which the plugin then uses directly\n`,
  );
  assert.equal(mirror.requests.length, 0);
});
