// What the whole-process benchmarks share: their flags, timing a process, medians, the machine's
// description, a token endpoint on 127.0.0.1, and writing a result block into a Markdown file.

/** The repository's root directory. */
/** The subject token the whole-process benchmarks send: a small JWT (its signature is never checked). */
export const SUBJECT_TOKEN =
  "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJodHRwczovL2FnZW50LmJ1aWxka2l0ZS5jb20ifQ.c2ln";

export const ROOT = decodeURIComponent(new URL("../", import.meta.url).pathname).replace(/\/$/, "");
/** The Deno that runs the benchmark, which every variant uses too. */
export const DENO = Deno.execPath();

/** The benchmark's command line (`deno task bench …`). */
export interface BenchOptions {
  mode: "loopback" | "realistic" | "release-binary";
  /** Timed runs of each variant. */
  runs: number;
  /** What `oidc request-token` and `redactor add` take in the realistic stand-in agent. */
  agentLatencyMs: number;
  redactorLatencyMs: number;
  /** A copy of version 0.x of the plugin, to time its hook beside ours. */
  v0?: string;
  /** Another checkout of this plugin (an earlier version), to time its hook beside ours. */
  before?: string;
  /** The release binary (or a stand-in of its size) for --release-binary. */
  binary?: string;
  /** Write the result block into this Markdown file, between the marker's comments. */
  write?: { path: string; marker: string };
}

/** One way of doing the work that a whole-process benchmark times. */
export interface Variant {
  /** Its letter in the table. */
  name: string;
  what: string;
  command: string[];
  env?: Record<string, string>;
}

const USAGE = `usage: deno task bench [--runs N] [--write PATH [--marker NAME] | --docs]
       deno task bench --realistic [--agent-latency-ms 100] [--redactor-latency-ms 10] [--before PATH] [--v0 PATH] [--runs N] [--write PATH --marker NAME]
       deno task bench --release-binary [--binary PATH] [--runs N] [--write PATH --marker NAME]`;

/** Reads the benchmark's flags; a mistake is one line on stderr and exit status 2. */
export function parseBenchArgs(args: string[]): BenchOptions {
  const fail = (message: string): never => {
    console.error(`bench: ${message}\n${USAGE}`);
    Deno.exit(2);
  };
  const values = new Map<string, string>();
  const switches = new Set<string>();
  const valued = [
    "--runs",
    "--agent-latency-ms",
    "--redactor-latency-ms",
    "--v0",
    "--before",
    "--binary",
    "--write",
    "--marker",
  ];
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    const [name, inline] = arg.startsWith("--") && arg.includes("=")
      ? [arg.slice(0, arg.indexOf("=")), arg.slice(arg.indexOf("=") + 1)]
      : [arg, undefined];
    if (valued.includes(name)) {
      const value = inline ?? args[++i];
      if (value === undefined || value === "") fail(`${name} needs a value`);
      values.set(name, value!);
    } else if (["--realistic", "--release-binary", "--docs"].includes(arg)) {
      switches.add(arg);
    } else if (arg === "-h" || arg === "--help") {
      console.log(USAGE);
      Deno.exit(0);
    } else {
      fail(`unknown argument "${arg}"`);
    }
  }
  const count = (name: string, fallback: number, min: number) => {
    const text = values.get(name);
    if (text === undefined) return fallback;
    const value = Number(text);
    if (!Number.isInteger(value) || value < min) {
      fail(`${name} is "${text}": use a whole number, ${min} or more`);
    }
    return value;
  };
  if (switches.has("--realistic") && switches.has("--release-binary")) {
    fail("--realistic and --release-binary are separate runs: choose one");
  }
  const mode = switches.has("--realistic")
    ? "realistic"
    : switches.has("--release-binary")
    ? "release-binary"
    : "loopback";
  if (values.has("--v0") && mode !== "realistic") fail("--v0 goes with --realistic");
  if (values.has("--before") && mode !== "realistic") fail("--before goes with --realistic");
  if (values.has("--binary") && mode !== "release-binary") {
    fail("--binary goes with --release-binary");
  }
  if (switches.has("--docs") && (mode !== "loopback" || values.has("--write"))) {
    fail(
      "--docs is short for --write docs/performance.md --marker performance, for the loopback table",
    );
  }
  if (values.has("--marker") && !values.has("--write")) fail("--marker goes with --write PATH");
  const marker = values.get("--marker") ?? (mode === "loopback" ? "performance" : undefined);
  if (values.has("--write") && marker === undefined) {
    fail(`--write needs --marker NAME for the ${mode} table (the file holds several)`);
  }
  if (marker !== undefined && !/^[a-z0-9-]+$/.test(marker)) {
    fail(`--marker is "${marker}": use lower-case letters, digits and dashes`);
  }
  const write = switches.has("--docs")
    ? { path: `${ROOT}/docs/performance.md`, marker: "performance" }
    : values.has("--write")
    ? { path: values.get("--write")!, marker: marker! }
    : undefined;
  return {
    mode,
    runs: count("--runs", mode === "release-binary" ? 10 : 30, 1),
    agentLatencyMs: count("--agent-latency-ms", 100, 0),
    redactorLatencyMs: count("--redactor-latency-ms", 10, 0),
    v0: values.get("--v0"),
    before: values.get("--before"),
    binary: values.get("--binary"),
    write,
  };
}

/**
 * Removes what a hook run leaves in TMPDIR until its pre-exit: the job's private directory. Between
 * timed runs, untimed, so that each run finds the TMPDIR of a host with no other job on it.
 */
export async function removeJobDirs(tmp: string): Promise<void> {
  for await (const entry of Deno.readDir(tmp)) {
    if (entry.name.startsWith("token-exchange-")) {
      await Deno.remove(`${tmp}/${entry.name}`, { recursive: true });
    }
  }
}

/** The median of some numbers. */
export function median(values: number[]): number {
  const sorted = [...values].sort((x, y) => x - y);
  const middle = Math.floor(sorted.length / 2);
  return sorted.length % 2 ? sorted[middle]! : (sorted[middle - 1]! + sorted[middle]!) / 2;
}

/** Milliseconds with one decimal. */
export function ms(value: number): string {
  return `${value.toFixed(1)} ms`;
}

/** Runs a command to completion and returns its wall time in ms; throws with its stderr on failure. */
export async function timeCommand(
  command: string[],
  env: Record<string, string>,
  what = command.join(" "),
): Promise<number> {
  const started = performance.now();
  const output = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    clearEnv: true,
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const elapsed = performance.now() - started;
  if (!output.success) {
    throw new Error(
      `${what} failed (exit ${output.code}): ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
  return elapsed;
}

/**
 * Times each variant `runs` times after `warmup` rounds, interleaved (one run of each per round, the
 * starting variant rotating), so that drift in the machine's load falls on every variant alike.
 */
export async function interleave<T extends { name: string }>(
  variants: T[],
  runs: number,
  warmup: number,
  runOnce: (variant: T) => Promise<number>,
): Promise<Map<string, number[]>> {
  const times = new Map<string, number[]>(variants.map((v) => [v.name, []]));
  for (let round = 0; round < warmup + runs; round++) {
    for (let k = 0; k < variants.length; k++) {
      const variant = variants[(round + k) % variants.length]!;
      const elapsed = await runOnce(variant);
      if (round >= warmup) times.get(variant.name)!.push(elapsed);
    }
  }
  return times;
}

/** The machine, as a table's caption names it: CPUs, CPU model, Deno, OS and architecture. */
export async function describeMachine(): Promise<{ cpus: number; cpu: string; text: string }> {
  // Deno counts /proc as privileged, so ask the shell for the CPU's name.
  const cpuinfo = await new Deno.Command("bash", {
    args: [
      "-c",
      "grep -m 1 'model name' /proc/cpuinfo 2>/dev/null || sysctl -n machdep.cpu.brand_string",
    ],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  const cpu = new TextDecoder().decode(cpuinfo?.stdout).replace(/^model name\s*:\s*/, "").trim() ||
    Deno.build.arch;
  const cpus = navigator.hardwareConcurrency;
  return {
    cpus,
    cpu,
    text:
      `a ${cpus}-CPU ${cpu} machine with Deno ${Deno.version.deno} on ${Deno.build.os} ${Deno.build.arch}`,
  };
}

/** The 1-minute load average, from the shell (Deno counts /proc as privileged); "n/a" elsewhere. */
export async function loadAverage(): Promise<string> {
  const output = await new Deno.Command("bash", {
    args: ["-c", 'read -r one _ </proc/loadavg && printf %s "$one"'],
    stdout: "piped",
    stderr: "null",
  }).output().catch(() => undefined);
  return new TextDecoder().decode(output?.stdout).trim() || "n/a";
}

/**
 * The floor every ratio is measured against: bench/floor.ts, a minimal Deno script doing the same
 * single fetch POST (it reads the subject token from SUBJECT_TOKEN).
 */
export function floorCommand(endpoint: string, host: string): string[] {
  return [
    DENO,
    "run",
    "--no-config",
    `--allow-net=${host}`,
    "--allow-env=SUBJECT_TOKEN",
    `${ROOT}/bench/floor.ts`,
    endpoint,
  ];
}

/** What the benchmarks' AWS STS answers to AssumeRoleWithWebIdentity. */
const AWS_CREDENTIALS = "<AssumeRoleWithWebIdentityResponse><AssumeRoleWithWebIdentityResult>" +
  "<Credentials><AccessKeyId>ASIABENCHMARK0123456</AccessKeyId>" +
  "<SecretAccessKey>benchmark-secret-access-key-0123456789</SecretAccessKey>" +
  "<SessionToken>benchmark-session-token-0123456789</SessionToken>" +
  "<Expiration>2099-01-01T00:00:00Z</Expiration></Credentials><AssumedRoleUser>" +
  "<Arn>arn:aws:sts::123456789012:assumed-role/deploy/bench</Arn></AssumedRoleUser>" +
  "</AssumeRoleWithWebIdentityResult></AssumeRoleWithWebIdentityResponse>";

/** A token endpoint on 127.0.0.1 that answers every exchange (and AWS STS) at once. */
export function startTokenEndpoint(): {
  endpoint: string;
  host: string;
  close: () => Promise<void>;
} {
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const body = await request.text();
      // AWS STS, for aws-role-arn (AWS_ENDPOINT_URL_STS): its XML answer.
      if (body.startsWith("Action=AssumeRoleWithWebIdentity&")) {
        return new Response(AWS_CREDENTIALS, { headers: { "content-type": "text/xml" } });
      }
      return Response.json({
        access_token: "ya29.benchmark-access-token",
        issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
        token_type: "Bearer",
        expires_in: 3600,
      });
    },
  );
  return {
    endpoint: `http://127.0.0.1:${server.addr.port}/token`,
    host: `127.0.0.1:${server.addr.port}`,
    close: async () => {
      controller.abort();
      await server.finished;
    },
  };
}

/**
 * Replaces what lies between `<!-- MARKER -->` and `<!-- /MARKER -->` in the Markdown file at
 * `path` with `block`, then formats the file with `deno fmt`.
 */
export async function writeSection(path: string, marker: string, block: string): Promise<void> {
  const open = `<!-- ${marker} -->`;
  const close = `<!-- /${marker} -->`;
  const text = await Deno.readTextFile(path);
  const start = text.indexOf(open);
  const end = text.indexOf(close);
  if (start === -1 || end < start) {
    throw new Error(
      `${path} has no ${open} … ${close} block: add the two lines where the table goes`,
    );
  }
  await Deno.writeTextFile(
    path,
    `${text.slice(0, start + open.length)}\n\n${block.trim()}\n\n${text.slice(end)}`,
  );
  const formatted = await new Deno.Command(DENO, {
    args: ["fmt", "--quiet", "--config", `${ROOT}/deno.json`, path],
  }).output();
  if (!formatted.success) throw new Error(`deno fmt ${path} failed`);
  console.log(`\n${path}: the <!-- ${marker} --> block is rewritten and formatted`);
}
