// `deno task bench --realistic`: the whole hook as a job runs it, with a stand-in buildkite-agent
// whose calls take as long as a real agent's (bench/bin/buildkite-agent), beside
//   (s) the same hook with the agent call made before Deno starts (TOKEN_EXCHANGE_SEQUENTIAL=1),
//   (v) version 0.x of this plugin's hook (bash, curl and jq), when --v0 PATH names a copy of it,
//       its jq download served over TLS from 127.0.0.1 (see startJqServer), and (j) that download
//       alone,
//   (g) the stand-in agent's `oidc request-token` alone,
//   (f) the floor: bench/floor.ts, one Deno fetch of the same request, and for the bound below
//   (d) bench/floor.ts stopped before its fetch (Deno's start-up) and (b) bash starting.
// The goals: h/v ≤ 0.55 and h/(g + f) ≤ 1.2. It prints the least any such hook can take on this
// machine, b + g + (f − d) + the redactor's latency (bash, the agent's answer, one fetch once Deno
// has started, the redactor's answer, with nothing else in between), against 0.55 × v. It also
// traces the processes each hook starts on success (item 5 of issue 11): the hook may start Deno
// and the agent calls, nothing else.

import {
  type BenchOptions,
  DENO,
  describeMachine,
  floorCommand,
  interleave,
  loadAverage,
  median,
  ms,
  ROOT,
  startTokenEndpoint,
  timeCommand,
  type Variant,
  writeSection,
} from "./_common.ts";
import { describeSummary, type ProcessSummary, traceProcesses } from "./_processes.ts";

const WARMUP = 3;
const GOAL_V0 = 0.55;
const GOAL_FLOOR = 1.2;

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

/** Sources a hook under bash, as the agent does. */
function sourceHook(hook: string): string[] {
  return ["bash", "-c", `set -euo pipefail; source ${JSON.stringify(hook)} >/dev/null`];
}

export async function realisticBench(options: BenchOptions): Promise<void> {
  const token = startTokenEndpoint();
  const work = await Deno.makeTempDir({ prefix: "bench-realistic-" });
  let jqServer: Awaited<ReturnType<typeof startJqServer>> | undefined;
  try {
    const fifo = `${work}/agent.fifo`;
    const mkfifo = await new Deno.Command("mkfifo", { args: [fifo] }).output();
    if (!mkfifo.success) throw new Error("mkfifo failed: the stand-in agent waits on a FIFO");
    const subjectToken = await mintSubjectToken();
    const agent = `${ROOT}/bench/bin/buildkite-agent`;
    const baseEnv: Record<string, string> = {
      PATH: `${ROOT}/bench/bin:${DENO.replace(/\/[^/]*$/, "")}:/usr/local/bin:/usr/bin:/bin`,
      HOME: Deno.env.get("HOME") ?? "/tmp",
      TMPDIR: work,
      BUILDKITE_JOB_ID: "0190f5e8-4d4e-4e8a-9c2b-3f5b7a1d2e6f",
      BENCH_AGENT_FIFO: fifo,
      BENCH_AGENT_OIDC_MS: String(options.agentLatencyMs),
      BENCH_AGENT_REDACTOR_MS: String(options.redactorLatencyMs),
      BENCH_SUBJECT_TOKEN: subjectToken,
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    };
    const pluginEnv = { BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: token.endpoint };

    const variants: Variant[] = [
      {
        name: "h",
        what: "`hooks/environment`",
        command: sourceHook(`${ROOT}/hooks/environment`),
        env: pluginEnv,
      },
      {
        name: "s",
        what: "`hooks/environment` with `TOKEN_EXCHANGE_SEQUENTIAL=1` (agent call not overlapped)",
        command: sourceHook(`${ROOT}/hooks/environment`),
        env: { ...pluginEnv, TOKEN_EXCHANGE_SEQUENTIAL: "1" },
      },
    ];
    if (options.v0 !== undefined) {
      const hook = `${options.v0.replace(/\/$/, "")}/hooks/environment`;
      await Deno.stat(hook).catch(() => {
        throw new Error(`--v0 ${options.v0}: no hooks/environment there`);
      });
      jqServer = await startJqServer(work);
      variants.push({
        name: "v",
        what: "version 0.x of this plugin (bash, curl and jq), jq served from 127.0.0.1",
        command: sourceHook(hook),
        env: { ...pluginEnv, CURL_HOME: jqServer.curlHome },
      }, {
        name: "j",
        what: "version 0.x's jq download alone (its curl, over TLS from 127.0.0.1)",
        command: [
          "curl",
          "--silent",
          "--fail",
          "--location",
          "--output",
          `${work}/jq-download`,
          "https://github.com/jqlang/jq/releases/download/jq-1.7.1/jq-linux-amd64",
        ],
        env: { CURL_HOME: jqServer.curlHome },
      });
    }
    variants.push(
      {
        name: "g",
        what: "the stand-in agent's `oidc request-token` alone",
        command: [agent, "oidc", "request-token", "--audience", "buildkite"],
      },
      {
        name: "f",
        what: "floor: `bench/floor.ts`, one Deno fetch",
        command: floorCommand(token.endpoint, token.host),
        env: { SUBJECT_TOKEN: subjectToken },
      },
      {
        name: "d",
        what: "Deno's start-up: `bench/floor.ts --start-only`",
        command: [...floorCommand(token.endpoint, token.host).slice(0, -1), "--start-only"],
      },
      {
        name: "b",
        what: "bash's start-up: `bash -c 'set -euo pipefail'`",
        command: sourceHook("/dev/null"),
      },
    );

    const machine = await describeMachine();
    console.log(
      `Realistic mode: stand-in agent ${options.agentLatencyMs} ms per oidc request-token, ${options.redactorLatencyMs} ms per redactor add`,
    );
    if (jqServer) console.log(`version 0.x: jq download served from ${jqServer.served}`);
    console.log(
      `${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text}`,
    );

    const loadBefore = await loadAverage();
    const times = await interleave(
      variants,
      options.runs,
      WARMUP,
      (v) => timeCommand(v.command, { ...baseEnv, ...v.env }, v.what),
    );
    const load = `load average ${loadBefore} before, ${await loadAverage()} after`;
    console.log(load);
    const medians = new Map([...times].map(([name, values]) => [name, median(values)]));
    const m = (name: string) => medians.get(name)!;

    // Item 5: what each hook starts on success, agent calls apart.
    const traced = new Map<string, ProcessSummary | undefined>();
    for (const v of variants.filter((v) => v.name === "h" || v.name === "s" || v.name === "v")) {
      traced.set(v.name, await traceProcesses(v.command, { ...baseEnv, ...v.env }));
    }

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
    const floor = m("g") + m("f");
    const lines: string[] = [];
    if (medians.has("v")) {
      lines.push(`h/v = ${(m("h") / m("v")).toFixed(2)} (goal ≤ ${GOAL_V0})`);
    }
    lines.push(
      `h/(g + f) = ${(m("h") / floor).toFixed(2)} (goal ≤ ${GOAL_FLOOR}; ` +
        `against the nominal ${options.agentLatencyMs} ms + f: ${
          (m("h") / (options.agentLatencyMs + m("f"))).toFixed(2)
        })`,
      `s/h = ${(m("s") / m("h")).toFixed(2)} (what starting the agent call first saves)`,
    );
    // The least a hook can take here: bash, the agent's answer, one fetch from a started Deno and
    // the redactor's answer, one after the other, with no other work and no process start between.
    const bound = m("b") + m("g") + (m("f") - m("d")) + options.redactorLatencyMs;
    lines.push(
      `bound: b + g + (f − d) + ${options.redactorLatencyMs} ms = ${ms(bound)}${
        medians.has("v") ? ` = ${(bound / m("v")).toFixed(2)} × v` : ""
      }; h is ${ms(m("h") - bound)} above it`,
    );
    console.log(`\n${lines.join("\n")}`);

    let extra = false;
    console.log("\nProcesses started on success (item 5), by strace -f:");
    for (const [name, summary] of traced) {
      if (!summary) {
        console.log(`  ${name}: n/a (strace is not installed or cannot trace here)`);
        continue;
      }
      // Programs are what item 5 is about (each costs an exec and the program's start-up); bash's
      // own subshells for $(…) and pipes are forks of the running shell, shown but not counted.
      const beyond = summary.programs.length;
      if (name !== "v" && beyond > 0) extra = true;
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
    if (extra) {
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
        `Processes started on success: the hook ${described("h")}${
          medians.has("v") ? `; version 0.x ${described("v")}` : ""
        }.`,
        "",
        "```sh",
        `deno task bench --realistic --runs ${options.runs} --agent-latency-ms ${options.agentLatencyMs} --redactor-latency-ms ${options.redactorLatencyMs}${
          options.v0 !== undefined ? " --v0 PATH" : ""
        } --write ${options.write.path} --marker ${options.write.marker}`,
        "```",
      ].join("\n");
      await writeSection(options.write.path, options.write.marker, block);
    }
  } finally {
    await jqServer?.close();
    await token.close();
    await Deno.remove(work, { recursive: true });
  }
}
