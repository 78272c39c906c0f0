// `deno task bench --realistic`: the whole hook as a job runs it, with a stand-in buildkite-agent
// whose calls take as long as a real agent's (bench/bin/buildkite-agent), in each of its modes:
//   (h) an exchange, (ha) aws-role-arn and (hg) google-credentials, which check the trust with one
//       request (AssumeRoleWithWebIdentity, Google's exchange) and write their files, the engine's
//       start overlapping the agent's request;
//   (p, pa, pg) the same with another checkout of the plugin, when --before PATH names one (the
//       version before the one engine, say: `git worktree add /tmp/before <commit>`);
//   (v) version 0.x of this plugin's hook (bash, curl and jq), when --v0 PATH names a copy of it,
//       its jq download served over TLS from 127.0.0.1 (see startJqServer), and (j) that download
//       alone;
//   (g) the stand-in agent's `oidc request-token` alone, and (r) its `redactor add` alone;
//   (f) the floor: bench/floor.ts, one Deno fetch of the same request, and for the bound below
//   (d) bench/floor.ts stopped before its fetch (Deno's start-up) and (b) bash starting.
// The goals: what the hook adds beyond the agent's and the redactor's own time, h − g − r, is at
// most half of one plain Deno run (f / 2); h/v ≤ 0.55; ha − pa and hg − pg are the one request. It
// prints the least any such hook can take on this machine, b + g + (f − d) + r (bash, the agent's
// answer, one fetch once Deno has started, the redactor's answer, with nothing else in between).
// It also traces the processes the hook starts on success (item 5 of issue 11): Deno and the agent
// calls, nothing else.

import {
  type BenchOptions,
  DENO,
  describeMachine,
  floorCommand,
  interleave,
  loadAverage,
  median,
  ms,
  removeJobDirs,
  ROOT,
  startTokenEndpoint,
  timeCommand,
  type Variant,
  writeSection,
} from "./_common.ts";
import { describeSummary, type ProcessSummary, traceProcesses } from "./_processes.ts";

const WARMUP = 3;
const GOAL_V0 = 0.55;
const PROVIDER =
  "//iam.googleapis.com/projects/123456789/locations/global/workloadIdentityPools/buildkite/providers/acme";

function base64url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes;
  return btoa(String.fromCharCode(...data)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

/** A Buildkite-shaped OIDC token: RS256-signed, with the claims and size of the agent's. */
async function mintSubjectToken(): Promise<string> {
  const { privateKey } = await crypto.subtle.generateKey(
    {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    false,
    ["sign"],
  );
  const now = Math.floor(Date.now() / 1000);
  const header = { typ: "JWT", alg: "RS256", kid: "bench-0f3a1c" };
  const claims = {
    iss: "https://agent.buildkite.com",
    sub:
      "organization:acme:pipeline:deploy:ref:refs/heads/main:commit:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b:step:deploy",
    aud: "buildkite",
    iat: now,
    nbf: now,
    exp: now + 600,
    organization_slug: "acme",
    pipeline_slug: "deploy",
    build_number: 1234,
    build_branch: "main",
    build_tag: "",
    build_commit: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b",
    step_key: "deploy",
    job_id: "0190f5e8-4d4e-4e8a-9c2b-3f5b7a1d2e6f",
    agent_id: "0190f5e8-1a2b-4c3d-8e9f-a0b1c2d3e4f5",
    build_source: "webhook",
    runner_environment: "self-hosted",
  };
  const signingInput = `${base64url(JSON.stringify(header))}.${base64url(JSON.stringify(claims))}`;
  const signature = await crypto.subtle.sign(
    "RSASSA-PKCS1-v1_5",
    privateKey,
    new TextEncoder().encode(signingInput),
  );
  return `${signingInput}.${base64url(new Uint8Array(signature))}`;
}

/**
 * Serves jq where version 0.x downloads it from, https://github.com/jqlang/jq/releases/download/…,
 * without touching its hook: a TLS server on 127.0.0.1 with a self-signed certificate for
 * github.com, and a .curlrc (found through CURL_HOME) whose `connect-to` sends github.com:443 there
 * and whose `cacert` trusts that certificate. So the hook's own curl does what it does in a job,
 * TLS handshake included, and no wrapper process is added; only the Internet's latency and
 * GitHub's redirect to its download host are missing, which favours version 0.x.
 */
async function startJqServer(work: string): Promise<{
  curlHome: string;
  served: string;
  close: () => Promise<void>;
}> {
  const cert = `${work}/github.com.pem`;
  const key = `${work}/github.com.key`;
  const openssl = await new Deno.Command("openssl", {
    args: [
      "req",
      "-x509",
      "-newkey",
      "ec",
      "-pkeyopt",
      "ec_paramgen_curve:prime256v1",
      "-nodes",
      "-days",
      "1",
      "-subj",
      "/CN=github.com",
      "-addext",
      "subjectAltName=DNS:github.com",
      "-keyout",
      key,
      "-out",
      cert,
    ],
    stdout: "null",
    stderr: "piped",
  }).output().catch(() => undefined);
  if (!openssl?.success) {
    throw new Error("--v0 needs openssl, to serve jq over TLS as github.com: install openssl");
  }
  const jqPath = await new Deno.Command("bash", { args: ["-c", "command -v jq"], stdout: "piped" })
    .output();
  const jq = new TextDecoder().decode(jqPath.stdout).trim();
  if (!jq) throw new Error("--v0 needs a jq binary to serve: apt-get install -y jq");
  // Read once, and each response written whole in one write: Deno.serve's TLS connections write
  // a large body in pieces, and Nagle's algorithm against curl's delayed ACK then stalls about
  // 40 ms on most downloads, which GitHub does not do and would wrong version 0.x.
  const binary = await Deno.readFile(await Deno.realPath(jq));
  const encoder = new TextEncoder();
  const respond = (status: string, body: Uint8Array) => {
    const head = encoder.encode(
      `HTTP/1.1 ${status}\r\ncontent-type: application/octet-stream\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n`,
    );
    const response = new Uint8Array(head.length + body.length);
    response.set(head);
    response.set(body, head.length);
    return response;
  };
  const found = respond("200 OK", binary);
  const notFound = respond("404 Not Found", encoder.encode("not found\n"));
  const listener = Deno.listenTls({
    hostname: "127.0.0.1",
    port: 0,
    cert: await Deno.readTextFile(cert),
    key: await Deno.readTextFile(key),
    alpnProtocols: ["http/1.1"],
  });
  const connections = new Set<Promise<void>>();
  const serve = async (conn: Deno.TlsConn) => {
    try {
      const buffer = new Uint8Array(16384);
      let request = "";
      while (!request.includes("\r\n\r\n") && request.length < 65536) {
        const n = await conn.read(buffer);
        if (n === null) return;
        request += new TextDecoder().decode(buffer.subarray(0, n));
      }
      const path = request.split(" ")[1] ?? "";
      const response = path.startsWith("/jqlang/jq/releases/download/jq-1.7.1/jq-")
        ? found
        : notFound;
      for (let written = 0; written < response.length;) {
        written += await conn.write(response.subarray(written));
      }
    } catch {
      // A client that went away: nothing to serve.
    } finally {
      conn.close();
    }
  };
  const accepting = (async () => {
    for await (const conn of listener) {
      const served = serve(conn);
      connections.add(served);
      served.finally(() => connections.delete(served));
    }
  })().catch(() => {});
  const curlHome = `${work}/curl-home`;
  await Deno.mkdir(curlHome);
  await Deno.writeTextFile(
    `${curlHome}/.curlrc`,
    `connect-to = github.com:443:127.0.0.1:${listener.addr.port}\ncacert = ${cert}\n`,
  );
  return {
    curlHome,
    served: `${jq} (${(binary.length / 1024).toFixed(0)} KiB)`,
    close: async () => {
      listener.close();
      await accepting;
      await Promise.all(connections);
    },
  };
}

/**
 * Sources a hook under bash, as the agent does, as a job of its own (the hook keeps a record in
 * TMPDIR, under the job's ID, until pre-exit).
 */
function sourceHook(hook: string): string[] {
  return [
    "bash",
    "-c",
    `export BUILDKITE_JOB_ID="bench-$$"; set -euo pipefail; source ${
      JSON.stringify(hook)
    } >/dev/null`,
  ];
}

/** The plugin options of each mode of the hook. */
function modes(endpoint: string): { suffix: string; what: string; env: Record<string, string> }[] {
  const option = (name: string) => `BUILDKITE_PLUGIN_TOKEN_EXCHANGE_${name}`;
  return [
    { suffix: "", what: "an exchange", env: { [option("TOKEN_ENDPOINT")]: endpoint } },
    {
      suffix: "a",
      what: "aws-role-arn",
      env: {
        [option("AWS_ROLE_ARN")]: "arn:aws:iam::123456789012:role/deploy",
        AWS_ENDPOINT_URL_STS: new URL(endpoint).origin,
      },
    },
    {
      suffix: "g",
      what: "google-credentials",
      env: {
        [option("GOOGLE_CREDENTIALS")]: "true",
        [option("TARGET_AUDIENCE")]: PROVIDER,
        [option("TOKEN_ENDPOINT")]: endpoint,
      },
    },
  ];
}

/** What a bench run needs: the endpoint, the stand-in agent's FIFO and token, the environment. */
interface Setup {
  endpoint: string;
  host: string;
  work: string;
  agent: string;
  subjectToken: string;
  env: Record<string, string>;
}

async function setUp(options: BenchOptions, endpoint: string, host: string): Promise<Setup> {
  const work = await Deno.makeTempDir({ prefix: "bench-realistic-" });
  const fifo = `${work}/agent.fifo`;
  const mkfifo = await new Deno.Command("mkfifo", { args: [fifo] }).output();
  if (!mkfifo.success) throw new Error("mkfifo failed: the stand-in agent waits on a FIFO");
  const subjectToken = await mintSubjectToken();
  return {
    endpoint,
    host,
    work,
    agent: `${ROOT}/bench/bin/buildkite-agent`,
    subjectToken,
    env: {
      PATH: `${ROOT}/bench/bin:${DENO.replace(/\/[^/]*$/, "")}:/usr/local/bin:/usr/bin:/bin`,
      HOME: Deno.env.get("HOME") ?? "/tmp",
      TMPDIR: work,
      BENCH_AGENT_FIFO: fifo,
      BENCH_AGENT_OIDC_MS: String(options.agentLatencyMs),
      BENCH_AGENT_REDACTOR_MS: String(options.redactorLatencyMs),
      BENCH_SUBJECT_TOKEN: subjectToken,
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    },
  };
}

/** The hook in each mode, this checkout's and --before's. */
async function hookVariants(setup: Setup, options: BenchOptions): Promise<Variant[]> {
  const checkouts = [{ prefix: "h", dir: ROOT, what: "`hooks/environment`" }];
  if (options.before !== undefined) {
    const dir = options.before.replace(/\/$/, "");
    await Deno.stat(`${dir}/hooks/environment`).catch(() => {
      throw new Error(`--before ${options.before}: no hooks/environment there`);
    });
    checkouts.push({ prefix: "p", dir, what: "`hooks/environment` of --before" });
  }
  return checkouts.flatMap((checkout) =>
    modes(setup.endpoint).map((mode) => ({
      name: `${checkout.prefix}${mode.suffix}`,
      what: `${checkout.what}, ${mode.what}`,
      command: sourceHook(`${checkout.dir}/hooks/environment`),
      env: mode.env,
    }))
  );
}

/** Version 0.x's hook, and its jq download alone, when --v0 names a copy of it. */
async function v0Variants(
  setup: Setup,
  options: BenchOptions,
): Promise<{ variants: Variant[]; jqServer?: Awaited<ReturnType<typeof startJqServer>> }> {
  if (options.v0 === undefined) return { variants: [] };
  const hook = `${options.v0.replace(/\/$/, "")}/hooks/environment`;
  await Deno.stat(hook).catch(() => {
    throw new Error(`--v0 ${options.v0}: no hooks/environment there`);
  });
  const jqServer = await startJqServer(setup.work);
  return {
    jqServer,
    variants: [{
      name: "v",
      what: "version 0.x of this plugin (bash, curl and jq), jq served from 127.0.0.1",
      command: sourceHook(hook),
      env: {
        BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: setup.endpoint,
        CURL_HOME: jqServer.curlHome,
      },
    }, {
      name: "j",
      what: "version 0.x's jq download alone (its curl, over TLS from 127.0.0.1)",
      command: [
        "curl",
        "--silent",
        "--fail",
        "--location",
        "--output",
        `${setup.work}/jq-download`,
        "https://github.com/jqlang/jq/releases/download/jq-1.7.1/jq-linux-amd64",
      ],
      env: { CURL_HOME: jqServer.curlHome },
    }],
  };
}

/** The parts the hook's time is made of, each alone. */
function partVariants(setup: Setup): Variant[] {
  return [
    {
      name: "g",
      what: "the stand-in agent's `oidc request-token` alone",
      command: [setup.agent, "oidc", "request-token", "--audience", "buildkite"],
    },
    {
      name: "r",
      what: "the stand-in agent's `redactor add` alone",
      command: [
        "bash",
        "-c",
        'exec "$0" redactor add <<<"ya29.benchmark-access-token"',
        setup.agent,
      ],
    },
    {
      name: "f",
      what: "floor: `bench/floor.ts`, one Deno fetch",
      command: floorCommand(setup.endpoint, setup.host),
      env: { SUBJECT_TOKEN: setup.subjectToken },
    },
    {
      name: "d",
      what: "Deno's start-up: `bench/floor.ts --start-only`",
      command: [...floorCommand(setup.endpoint, setup.host).slice(0, -1), "--start-only"],
    },
    {
      name: "b",
      what: "bash's start-up: `bash -c 'set -euo pipefail'`",
      command: ["bash", "-c", "set -euo pipefail; source /dev/null"],
    },
  ];
}

/** The goals, one line each, from the medians. */
function verdicts(m: (name: string) => number, has: (name: string) => boolean): string[] {
  const lines: string[] = [];
  const added = m("h") - m("g") - m("r");
  lines.push(
    `added: h − g − r = ${ms(added)}, ${(added / m("f")).toFixed(2)} × f (goal ≤ 0.5 × f = ${
      ms(m("f") / 2)
    }: ${added <= m("f") / 2 ? "met" : "not met"})`,
  );
  const checks = [["a", "AssumeRoleWithWebIdentity"], ["g", "exchange at Google's STS"]];
  for (const [mode, request] of checks) {
    if (has(`p${mode}`)) {
      lines.push(
        `h${mode}/p${mode} = ${(m(`h${mode}`) / m(`p${mode}`)).toFixed(2)} (h${mode} − p${mode} = ${
          ms(m(`h${mode}`) - m(`p${mode}`))
        }), with the ${request} that now checks the trust in the hook (loopback here; a real provider adds its round trip)`,
      );
    }
  }
  if (has("p")) lines.push(`h/p = ${(m("h") / m("p")).toFixed(2)}`);
  if (has("v")) lines.push(`h/v = ${(m("h") / m("v")).toFixed(2)} (goal ≤ ${GOAL_V0})`);
  const bound = m("b") + m("g") + (m("f") - m("d")) + m("r");
  lines.push(
    `bound: b + g + (f − d) + r = ${ms(bound)}; h is ${ms(m("h") - bound)} above it`,
  );
  return lines;
}

/** Item 5 of issue 11: what each hook starts on success, agent calls apart; false if more. */
async function reportProcesses(
  variants: Variant[],
  env: Record<string, string>,
): Promise<{ ok: boolean; traced: Map<string, ProcessSummary | undefined> }> {
  const traced = new Map<string, ProcessSummary | undefined>();
  for (const v of variants.filter((v) => ["h", "ha", "hg", "v"].includes(v.name))) {
    traced.set(v.name, await traceProcesses(v.command, { ...env, ...v.env }));
    await removeJobDirs(env.TMPDIR!);
  }
  let ok = true;
  console.log("\nProcesses started on success (item 5), by strace -f:");
  for (const [name, summary] of traced) {
    if (!summary) {
      console.log(`  ${name}: n/a (strace is not installed or cannot trace here)`);
      continue;
    }
    // Programs are what item 5 is about (each costs an exec and the program's start-up); bash's
    // own subshells for $(…) and pipes are forks of the running shell, shown but not counted.
    const beyond = summary.programs.length;
    if (name !== "v" && beyond > 0) ok = false;
    console.log(
      `  ${name}: ${describeSummary(summary)}${
        name === "v"
          ? ""
          : beyond > 0
          ? `: ✗ ${beyond} programs beyond Deno and the agent calls`
          : ": ✓ no program beyond Deno and the agent calls"
      }`,
    );
  }
  return { ok, traced };
}

export async function realisticBench(options: BenchOptions): Promise<void> {
  const token = startTokenEndpoint();
  const setup = await setUp(options, token.endpoint, token.host);
  let jqServer: Awaited<ReturnType<typeof startJqServer>> | undefined;
  try {
    const v0 = await v0Variants(setup, options);
    jqServer = v0.jqServer;
    const variants = [
      ...await hookVariants(setup, options),
      ...v0.variants,
      ...partVariants(setup),
    ];
    const machine = await describeMachine();
    console.log(
      `Realistic mode: stand-in agent ${options.agentLatencyMs} ms per oidc request-token, ${options.redactorLatencyMs} ms per redactor add`,
    );
    if (jqServer) console.log(`version 0.x: jq download served from ${jqServer.served}`);
    console.log(
      `${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text}`,
    );
    const loadBefore = await loadAverage();
    const times = await interleave(variants, options.runs, WARMUP, async (v) => {
      const elapsed = await timeCommand(v.command, { ...setup.env, ...v.env }, v.what);
      await removeJobDirs(setup.work);
      return elapsed;
    });
    const load = `load average ${loadBefore} before, ${await loadAverage()} after`;
    console.log(load);
    const medians = new Map([...times].map(([name, values]) => [name, median(values)]));
    const m = (name: string) => medians.get(name)!;
    const { ok, traced } = await reportProcesses(variants, setup.env);

    console.log("\n| | what | median | min | max |");
    console.log("| - | - | -: | -: | -: |");
    for (const v of variants) {
      const values = times.get(v.name)!;
      console.log(
        `| ${v.name} | ${v.what} | ${ms(m(v.name))} | ${ms(Math.min(...values))} | ${
          ms(Math.max(...values))
        } |`,
      );
    }
    const lines = verdicts(m, (name) => medians.has(name));
    console.log(`\n${lines.join("\n")}`);
    if (!ok) {
      console.log("✗ the hook starts programs beyond Deno and the agent calls (issue 11, item 5)");
      Deno.exitCode = 1;
    }
    if (options.write) {
      const described = (name: string) => {
        const summary = traced.get(name);
        return summary ? describeSummary(summary) : "not traced (no strace)";
      };
      const block = [
        `Whole \`environment\` hook, sourced by bash as the agent does, against a token endpoint on 127.0.0.1, with a stand-in \`buildkite-agent\` whose \`oidc request-token\` takes ${options.agentLatencyMs} ms and \`redactor add\` ${options.redactorLatencyMs} ms: median of ${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text} (${load}).`,
        "",
        "| | what | median |",
        "| - | - | -: |",
        ...variants.map((v) => `| ${v.name} | ${v.what} | ${ms(m(v.name))} |`),
        "",
        `${lines.join("; ")}.`,
        "",
        `Processes started on success: the hook ${described("h")}; with aws-role-arn ${
          described("ha")
        }; with google-credentials ${described("hg")}${
          medians.has("v") ? `; version 0.x ${described("v")}` : ""
        }.`,
        "",
        "```sh",
        `deno task bench --realistic --runs ${options.runs} --agent-latency-ms ${options.agentLatencyMs} --redactor-latency-ms ${options.redactorLatencyMs}${
          options.before !== undefined ? " --before PATH" : ""
        }${
          options.v0 !== undefined ? " --v0 PATH" : ""
        } --write ${options.write.path} --marker ${options.write.marker}`,
        "```",
      ].join("\n");
      await writeSection(options.write.path, options.write.marker, block);
    }
  } finally {
    await jqServer?.close();
    await token.close();
    await Deno.remove(setup.work, { recursive: true });
  }
}
