// cli.ts run by URL, as `deno run jsr:@equinixmetal/token-exchange/cli` or `deno run https://…/cli.ts`
// runs it: the files the package publishes are served over HTTP from 127.0.0.1, and Deno fetches
// them into an empty cache, with no permission to read local files.

import assert from "node:assert/strict";
import { STANDIN_BIN } from "./_cli.ts";
import { publishedFiles, ROOT_PATH } from "./_publish.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { assertNoSecrets, ISSUED_TOKEN, SUBJECT_TOKEN } from "./_tokens.ts";
import { helpText } from "../_cli_flags.ts";
import { VERSION } from "../_constants.ts";

const CONTENT_TYPES: Record<string, string> = {
  ts: "application/typescript; charset=utf-8",
  json: "application/json",
  md: "text/markdown; charset=utf-8",
};

/** The modules cli.ts imports, statically or with `import()`: what a run must fetch. */
const CLI_MODULES = [
  "_aws.ts",
  "_cli_config.ts",
  "_cli_exchange.ts",
  "_cli_flags.ts",
  "_cli_report.ts",
  "_constants.ts",
  "_direct_fetch.ts",
  "_discovery.ts",
  "_errors.ts",
  "_exchange.ts",
  "_exec_credential.ts",
  "_google.ts",
  "_handover.ts",
  "_http.ts",
  "_json.ts",
  "_jwt.ts",
  "_plugin.ts",
  "_plugin_files.ts",
  "_plugin_modes.ts",
  "_plugin_options.ts",
  "_plugin_providers.ts",
  "_plugin_revoke.ts",
  "_plugin_values.ts",
  "_providers.ts",
  "_redact.ts",
  "_refresh_schedule.ts",
  "_request.ts",
  "_response.ts",
  "_subject_token.ts",
  "_url.ts",
  "cli.ts",
];

const PUBLISHED = await publishedFiles();

/** A static file server on 127.0.0.1 for the published files only; it records every path asked for. */
function serveModules() {
  const requested: string[] = [];
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const path = decodeURIComponent(new URL(request.url).pathname).slice(1);
      requested.push(path);
      if (request.method !== "GET" || !PUBLISHED.includes(path)) {
        return new Response("Not found", { status: 404 });
      }
      const type = CONTENT_TYPES[path.split(".").pop()!] ?? "application/octet-stream";
      const body = await Deno.readFile(`${ROOT_PATH}${path}`);
      return new Response(body, { headers: { "content-type": type } });
    },
  );
  return {
    host: `127.0.0.1:${server.addr.port}`,
    requested,
    async [Symbol.asyncDispose]() {
      controller.abort();
      await server.finished;
    },
  };
}

interface RemoteRun {
  code: number;
  stdout: string;
  stderr: string;
  agentCalls: string[][];
}

/**
 * Runs `deno run <url>/cli.ts` in an empty directory with an empty DENO_DIR, so every module is
 * really fetched, and without --allow-read, so the CLI can read no local file.
 */
async function runRemote(
  modules: { host: string },
  args: string[],
  { allowNet }: { allowNet?: string } = {},
): Promise<RemoteRun> {
  const home = await Deno.makeTempDir({ prefix: "remote-run-" });
  try {
    const log = `${home}/agent.log`;
    await Deno.writeTextFile(log, "");
    const output = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        "--no-config",
        `--allow-import=${modules.host}`,
        ...(allowNet ? [`--allow-net=${allowNet}`] : []),
        "--allow-env",
        "--allow-run=buildkite-agent",
        `http://${modules.host}/cli.ts`,
        ...args,
      ],
      cwd: home,
      clearEnv: true,
      env: {
        NO_COLOR: "1",
        HOME: home,
        DENO_DIR: `${home}/deno`,
        PATH: [STANDIN_BIN, "/usr/bin", "/bin"].join(":"),
        STANDIN_LOG: log,
        STANDIN_TOKEN: SUBJECT_TOKEN,
      },
      stdin: "null",
    }).output();
    // The log lives in the temporary directory, which the stand-in agent may write; read it last.
    const agentCalls = (await Deno.readTextFile(log)).split("\n").filter((line) => line)
      .map((line) => line.split("\x1f"));
    return {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      agentCalls,
    };
  } finally {
    await Deno.remove(home, { recursive: true });
  }
}

/** The lines Deno prints as it fetches each module, in the order given. */
function downloads(host: string, paths: readonly string[]): string[] {
  return paths.map((path) => `Download http://${host}/${path}`);
}

/** Splits stderr into Deno's download lines (sorted: Deno fetches in parallel) and the rest. */
function splitStderr(stderr: string): { downloads: string[]; rest: string } {
  const lines = stderr.split("\n");
  return {
    downloads: lines.filter((line) => line.startsWith("Download ")).sort(),
    rest: lines.filter((line) => !line.startsWith("Download ")).join("\n"),
  };
}

Deno.test("the published files include every module cli.ts imports", () => {
  for (const module of CLI_MODULES) assert.ok(PUBLISHED.includes(module), module);
});

Deno.test("cli.ts run by URL prints --help, fetching each module it imports once and nothing else", async () => {
  await using modules = serveModules();
  const result = await runRemote(modules, ["--help"]);
  assert.deepEqual(
    { code: result.code, stdout: result.stdout, ...splitStderr(result.stderr) },
    {
      code: 0,
      stdout: `${helpText(VERSION)}\n`,
      downloads: downloads(modules.host, CLI_MODULES),
      rest: "",
    },
  );
  assert.deepEqual([...modules.requested].sort(), CLI_MODULES);
  assert.deepEqual(result.agentCalls, []);
});

Deno.test("cli.ts run by URL exchanges the Buildkite OIDC token at a loopback endpoint", async () => {
  await using modules = serveModules();
  await using endpoint = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
  const result = await runRemote(
    modules,
    ["--token-endpoint", endpoint.url, "--audience", "sts.example.com"],
    { allowNet: new URL(endpoint.origin).host },
  );
  assert.deepEqual(
    { code: result.code, stdout: result.stdout, ...splitStderr(result.stderr) },
    {
      code: 0,
      stdout: `${ISSUED_TOKEN}\n`,
      downloads: downloads(modules.host, CLI_MODULES),
      rest: "",
    },
  );
  assert.deepEqual(result.agentCalls, [[
    "oidc",
    "request-token",
    "--audience",
    "sts.example.com",
  ]]);
  assert.deepEqual(endpoint.requests.map((r) => [r.method, r.path, r.form]), [[
    "POST",
    "/token",
    [
      ["grant_type", "urn:ietf:params:oauth:grant-type:token-exchange"],
      ["subject_token", SUBJECT_TOKEN],
      ["subject_token_type", "urn:ietf:params:oauth:token-type:jwt"],
    ],
  ]]);
});

Deno.test("cli.ts run by URL loads its lazily imported modules: discovery with --issuer, JWT decoding with --debug", async () => {
  await using modules = serveModules();
  await using endpoint = startTokenEndpoint((request) =>
    request.path === "/.well-known/openid-configuration"
      ? Response.json({ issuer: endpoint.origin, token_endpoint: `${endpoint.origin}/sts/token` })
      : tokenResponse({ access_token: ISSUED_TOKEN })
  );
  const result = await runRemote(modules, ["--issuer", endpoint.origin, "--debug"], {
    allowNet: new URL(endpoint.origin).host,
  });
  const { downloads: fetched, rest } = splitStderr(result.stderr);
  assert.deepEqual({ code: result.code, stdout: result.stdout, fetched }, {
    code: 0,
    stdout: `${ISSUED_TOKEN}\n`,
    fetched: downloads(modules.host, CLI_MODULES),
  });
  // _discovery.ts found the endpoint and _jwt.ts decoded both tokens.
  assert.match(
    rest,
    new RegExp(`debug: Discovery: token endpoint is ${endpoint.origin}/sts/token`),
  );
  assert.match(
    rest,
    /debug: Buildkite OIDC token: header \{"alg":"RS256".*"sub":"organization:acme:/,
  );
  assert.match(rest, /debug: Issued token: header \{"alg":"RS256".*"sub":"deployer"/);
  assertNoSecrets(rest, "stderr of the remote run");
  assert.deepEqual(endpoint.requests.map((r) => [r.method, r.path]), [
    ["GET", "/.well-known/openid-configuration"],
    ["POST", "/sts/token"],
  ]);
});
