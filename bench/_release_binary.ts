// `deno task bench --release-binary`: what a job on an agent without Deno pays for the release
// binary, after its one download, against a job with Deno. The hook verifies the binary's SHA-256
// once, when it downloads it; before each run it only checks, with one `find`, that no other user
// could have changed it since (lib/binary.bash), while the agent answers. So this times, interleaved:
//   (w) the environment hook with Deno on PATH, and (n) without, with the binary in its cache, each
//   with a stand-in agent as slow as a real one (bench/bin), and (w0, n0) with one that answers at
//   once (tests/bin), the worst case;
//   (k) the cache check alone, and (s) hashing the binary, which the hook no longer does per run;
//   (f) the floor, one Deno fetch;
// and, for the one-off download, how much gzip -9 and xz -6 would save and what unpacking costs,
// with the bandwidth below which serving it compressed pays. With --binary PATH (a `deno compile`
// of cli.ts) that binary is timed; without it, a stand-in of the real size: a small program that
// runs `deno run cli.ts` with the arguments it is given (what a compiled binary does), padded with
// zeros to the size of the running Deno, which is what `deno compile` embeds.

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
  SUBJECT_TOKEN,
  timeCommand,
  writeSection,
} from "./_common.ts";

const WARMUP = 2;

interface Variant {
  name: string;
  what: string;
  command: string[];
  env?: Record<string, string>;
}

/** The binary being timed, in the cache of a copy of the plugin, and how it was made. */
interface Binary {
  path: string;
  size: number;
  /** How the stand-in was made, or undefined for a real binary (--binary). */
  standIn: string | undefined;
}

/** One compressed download: its size and the median time to unpack it. */
interface Packed {
  name: string;
  size: number;
  unpack: number;
}

/** The results as both the console and the Markdown block give them. */
interface Report {
  /** The table's rows: letter, what, median. */
  rows: string[][];
  /** The ratio a job without Deno costs to one with it. */
  verdict: string;
  /** One line for each compression of the download. */
  compressionLines: string[];
  /** What the first job on a fresh agent costs. */
  firstJob?: string;
}

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

/** Runs a command, untimed; throws with its stderr if it fails. */
async function run(command: string[]): Promise<void> {
  const output = await new Deno.Command(command[0]!, {
    args: command.slice(1),
    stdout: "null",
    stderr: "piped",
  }).output();
  if (!output.success) {
    throw new Error(
      `${command.join(" ")} failed: ${new TextDecoder().decode(output.stderr).trim()}`,
    );
  }
}

/**
 * A stand-in for the release binary at PATH: a C program that runs `deno run cli.ts` with every
 * permission (as the compiled binary has them) and its own arguments, padded to Deno's size; or,
 * without a C compiler, a bash script that does the same (a few milliseconds slower to start).
 */
async function makeStandIn(path: string): Promise<string> {
  const deno = JSON.stringify(DENO);
  const cli = JSON.stringify(`${ROOT}/cli.ts`);
  await Deno.writeTextFile(
    `${path}.c`,
    `#include <unistd.h>
int main(int argc, char **argv) {
  char *args[argc + 9];
  char *fixed[] = {${deno}, "run", "--no-config", "--no-lock", "--no-remote", "--no-prompt", "-A", ${cli}};
  for (int i = 0; i < 8; i++) args[i] = fixed[i];
  for (int i = 1; i < argc; i++) args[7 + i] = argv[i];
  args[7 + argc] = 0;
  execv(args[0], args);
  return 127;
}
`,
  );
  const cc = await new Deno.Command("cc", { args: ["-O2", "-o", path, `${path}.c`] }).output()
    .catch(() => undefined);
  if (cc?.success) {
    const program = await Deno.readFile(path);
    const padded = new Uint8Array((await Deno.stat(DENO)).size);
    padded.set(program);
    await Deno.writeFile(path, padded);
    return `a C program that runs \`deno run cli.ts\`, padded to the size of Deno ${Deno.version.deno}`;
  }
  await Deno.writeTextFile(
    path,
    `#!/usr/bin/env bash\nexec ${deno} run --no-config --no-lock --no-remote --no-prompt -A ${cli} "$@"\n`,
  );
  return "a bash script that runs `deno run cli.ts` (no C compiler here: not of the real size)";
}

/** A copy of the plugin whose dist/SHA256SUMS pins the binary, which is in its cache, read-only. */
async function pluginWithBinary(
  work: string,
  given: string | undefined,
): Promise<{ plugin: string; cache: string; binary: Binary }> {
  const plugin = `${work}/plugin`;
  const cache = `${work}/cache`;
  await Deno.mkdir(`${plugin}/dist`, { recursive: true });
  await Deno.mkdir(cache, { mode: 0o700 });
  await run(["cp", "-R", `${ROOT}/hooks`, `${ROOT}/lib`, `${ROOT}/deno.json`, `${plugin}/`]);
  const target = `${Deno.build.arch}-${
    Deno.build.os === "darwin" ? "apple-darwin" : "unknown-linux-gnu"
  }`;
  const built = `${work}/token-exchange-${target}`;
  let standIn: string | undefined;
  if (given === undefined) standIn = await makeStandIn(built);
  else await Deno.copyFile(given, built);
  const sha256 = Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(built))),
    (byte) => byte.toString(16).padStart(2, "0"),
  ).join("");
  await Deno.writeTextFile(`${plugin}/dist/SHA256SUMS`, `${sha256}  token-exchange-${target}\n`);
  const path = `${cache}/token-exchange-${target}-${sha256}`;
  await Deno.rename(built, path);
  await Deno.chmod(path, 0o500);
  return { plugin, cache, binary: { path, size: (await Deno.stat(path)).size, standIn } };
}

/** A bin directory with every program of the system's but deno. */
async function pathWithoutDeno(work: string): Promise<string> {
  const bin = `${work}/bin`;
  await Deno.mkdir(bin);
  for (const system of ["/usr/local/bin", "/usr/bin", "/bin"]) {
    for await (const entry of Deno.readDir(system)) {
      if (entry.name === "deno" || entry.isDirectory) continue;
      await Deno.symlink(`${system}/${entry.name}`, `${bin}/${entry.name}`).catch(() => {});
    }
  }
  return bin;
}

/** A hook run, as a job of its own (the hook keeps a record under the job's ID until pre-exit). */
function hook(plugin: string): string[] {
  return [
    "bash",
    "-c",
    `export BUILDKITE_JOB_ID="bench-$$"; set -euo pipefail; source ${
      JSON.stringify(`${plugin}/hooks/environment`)
    } >/dev/null`,
  ];
}

/** The jobs with and without Deno, and what the one without does beyond it, for scale. */
async function releaseVariants(
  work: string,
  setup: { plugin: string; cache: string; binary: Binary },
  token: { endpoint: string; host: string },
): Promise<Variant[]> {
  const hash = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
      .output().then((o) => o.success, () => false)
    ? ["openssl", "dgst", "-sha256", setup.binary.path]
    : ["sha256sum", setup.binary.path];
  const denoPath = `${DENO.replace(/\/[^/]*$/, "")}:/usr/local/bin:/usr/bin:/bin`;
  const withoutDeno = await pathWithoutDeno(work);
  // Each job with an agent as slow as a real one (100 ms for the OIDC token, as --realistic), and
  // with one that answers at once: the worst case, where nothing hides the binary's check.
  const agents = [
    { suffix: "", bin: `${ROOT}/bench/bin`, what: "a 100 ms agent" },
    { suffix: "0", bin: `${ROOT}/tests/bin`, what: "an agent that answers at once" },
  ];
  return [
    ...agents.flatMap((agent): Variant[] => [
      {
        name: `w${agent.suffix}`,
        what: `a job with Deno on PATH: \`hooks/environment\`, ${agent.what}`,
        command: hook(ROOT),
        env: { PATH: `${agent.bin}:${denoPath}` },
      },
      {
        name: `n${agent.suffix}`,
        what: `a job without Deno: \`hooks/environment\`, the binary in its cache, ${agent.what}`,
        command: hook(setup.plugin),
        env: { PATH: `${agent.bin}:${withoutDeno}`, TOKEN_EXCHANGE_CACHE_DIR: setup.cache },
      },
    ]),
    {
      name: "k",
      what: "what n does beyond w: the check that no other user could have changed the binary",
      command: [
        "bash",
        "-c",
        'source "$1/lib/binary.bash"; install=; token_exchange_trusted check "$2" "$3"',
        "_",
        setup.plugin,
        setup.binary.path,
        setup.cache,
      ],
    },
    {
      name: "s",
      what: `\`${hash[0]}\` hashing the binary, which the hook no longer does before each run`,
      command: hash,
    },
    {
      name: "f",
      what: "floor: `bench/floor.ts`, one Deno fetch",
      command: floorCommand(token.endpoint, token.host),
    },
  ];
}

/** The download, once per version: gzip -9 and xz -6 sizes, and the median time to unpack each. */
async function timeCompressions(
  binary: Binary,
  work: string,
  runs: number,
  env: Record<string, string>,
): Promise<Packed[]> {
  const compressions = [
    { name: "gzip -9", suffix: "gz", pack: ["gzip", "-9", "-c"], unpack: "gzip -dc" },
    { name: "xz -6", suffix: "xz", pack: ["xz", "-6", "-T1", "-c"], unpack: "xz -dc" },
  ];
  const packed: Packed[] = [];
  for (const c of compressions) {
    const file = `${work}/download.${c.suffix}`;
    const started = performance.now();
    await run(["bash", "-c", `${c.pack.join(" ")} "$1" >"$2"`, "_", binary.path, file]);
    const packSeconds = (performance.now() - started) / 1000;
    const unpackTimes: number[] = [];
    for (let i = 0; i < Math.min(runs, 5); i++) {
      unpackTimes.push(
        await timeCommand(
          ["bash", "-c", `${c.unpack} "$1" >"$2"`, "_", file, `${work}/unpacked`],
          env,
          c.unpack,
        ),
      );
    }
    const entry = {
      name: c.name,
      size: (await Deno.stat(file)).size,
      unpack: median(unpackTimes),
    };
    packed.push(entry);
    console.log(`  ${c.name}: packed in ${packSeconds.toFixed(1)} s (once, at release)`);
    await Deno.remove(file);
  }
  return packed;
}

/** The first job on a fresh agent: the hook with an empty cache, and how long it took. */
interface FirstJob {
  /** Median of the hook's runs, each downloading from 127.0.0.1, verifying and running. */
  loopback: number;
  runs: number;
}

/**
 * Times the first job on an agent without Deno (an ephemeral one, say: a fresh pod or machine per
 * job): the hook downloads the binary from a server on 127.0.0.1, verifies its SHA-256, moves it
 * into an empty cache and runs it. Over a real network the download adds size × 8 / bandwidth.
 */
async function timeFirstJob(
  setup: { plugin: string; binary: Binary },
  work: string,
  runs: number,
  env: Record<string, string>,
): Promise<FirstJob> {
  const name = setup.binary.path.slice(setup.binary.path.lastIndexOf("/") + 1).replace(
    /-[0-9a-f]{64}$/,
    "",
  );
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) =>
      new URL(request.url).pathname.endsWith(`/${name}`)
        ? new Response((await Deno.open(setup.binary.path)).readable)
        : new Response("not found", { status: 404 }),
  );
  const withoutDeno = `${work}/bin`;
  const times: number[] = [];
  try {
    for (let i = 0; i < runs; i++) {
      const cache = `${work}/first-job-cache`;
      times.push(
        await timeCommand(hook(setup.plugin), {
          ...env,
          PATH: `${ROOT}/bench/bin:${withoutDeno}`,
          TOKEN_EXCHANGE_CACHE_DIR: cache,
          TOKEN_EXCHANGE_DOWNLOAD_URL: `http://127.0.0.1:${server.addr.port}`,
        }, "the first job"),
      );
      await Deno.remove(cache, { recursive: true });
      await removeJobDirs(work);
    }
  } finally {
    controller.abort();
    await server.finished;
  }
  return { loopback: median(times), runs };
}

/** What the first job costs, in words: on loopback, and the download at common bandwidths. */
function firstJobLine(first: FirstJob, size: number): string {
  const at = (mbits: number) => `${(size * 8 / (mbits * 1e6)).toFixed(1)} s at ${mbits} Mbit/s`;
  return `the first job on an agent without Deno (an empty cache: download from 127.0.0.1, verify, run; median of ${first.runs}) takes ${
    ms(first.loopback)
  }; over a network the ${mib(size)} download adds ${at(100)}, ${at(1000)}`;
}

/** The table's rows, the verdict and the compression lines, from the timed runs. */
function releaseReport(
  variants: Variant[],
  times: Map<string, number[]>,
  packed: Packed[],
  size: number,
): Report {
  const m = (name: string) => median(times.get(name)!);
  const rows = variants.map((v) => [v.name, v.what, ms(m(v.name))]);
  const compressionLines = packed.map((p) => {
    // Serving it compressed pays when the bytes saved take longer to download than unpacking.
    const breakEven = (size - p.size) / (p.unpack / 1000);
    return `${p.name}: ${mib(p.size)} (${(100 * p.size / size).toFixed(0)}% of ${
      mib(size)
    }), unpacked in ${ms(p.unpack)}; it pays below ${(breakEven * 8 / 1e6).toFixed(0)} Mbit/s`;
  });
  const verdict = `n/w = ${
    (m("n") / m("w")).toFixed(2)
  } (goal ≤ 1.1: a job without Deno, after the download, costs at most 1.1 × a job with it); with an agent that answers at once, n0/w0 = ${
    (m("n0") / m("w0")).toFixed(2)
  }`;
  return { rows, verdict, compressionLines };
}

/** Prints the table, the verdict and the download's compressions. */
function printReport(report: Report): void {
  console.log("\n| | what | median |");
  console.log("| - | - | -: |");
  for (const row of report.rows) console.log(`| ${row.join(" | ")} |`);
  console.log(
    `\n${report.verdict}\nDownload, once per version:\n  ${
      report.compressionLines.join("\n  ")
    }\nFirst job: ${report.firstJob}`,
  );
}

/** The block --write puts into the Markdown file, ending with the command that made it. */
function releaseBlock(
  report: Report,
  binary: Binary,
  runs: number,
  write: { path: string; marker: string },
  machine: string,
  load: string,
): string {
  return [
    `Without Deno, the hook verifies the release binary's SHA-256 once, when it downloads it, and before each run checks only that no other user could have changed it since. ${
      binary.standIn === undefined
        ? `The binary is ${mib(binary.size)}`
        : `The binary here is a stand-in, ${binary.standIn}, ${mib(binary.size)}`
    }; median of ${runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine} (${load}).`,
    "",
    "| | what | median |",
    "| - | - | -: |",
    ...report.rows.map((row) => `| ${row.join(" | ")} |`),
    "",
    `${report.verdict}. The download happens once per version: ${
      report.compressionLines.join("; ")
    }.`,
    "",
    `On an ephemeral agent every job is a first job: ${report.firstJob}.`,
    "",
    "```sh",
    `deno task bench --release-binary --runs ${runs}${
      binary.standIn === undefined ? " --binary PATH" : ""
    } --write ${write.path} --marker ${write.marker}`,
    "```",
  ].join("\n");
}

/** `deno task bench --release-binary`: a job with and without Deno, and compressing the binary. */
export async function releaseBinaryBench(options: BenchOptions): Promise<void> {
  const token = startTokenEndpoint();
  const work = await Deno.makeTempDir({ prefix: "bench-release-binary-" });
  try {
    const setup = await pluginWithBinary(work, options.binary);
    const { binary } = setup;
    const log = `${work}/agent.log`;
    await Deno.writeTextFile(log, "");
    const fifo = `${work}/agent.fifo`;
    await run(["mkfifo", fifo]);
    const env: Record<string, string> = {
      HOME: Deno.env.get("HOME") ?? "/tmp",
      BENCH_AGENT_FIFO: fifo,
      BENCH_SUBJECT_TOKEN: SUBJECT_TOKEN,
      TMPDIR: work,
      SUBJECT_TOKEN,
      STANDIN_LOG: log,
      STANDIN_TOKEN: SUBJECT_TOKEN,
      BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: token.endpoint,
      PATH: "/usr/local/bin:/usr/bin:/bin",
      DENO_NO_UPDATE_CHECK: "1",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    };
    const variants = await releaseVariants(work, setup, token);
    const machine = await describeMachine();
    console.log(
      `Release binary: ${mib(binary.size)}${
        binary.standIn === undefined ? "" : ` (stand-in: ${binary.standIn})`
      }; ${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text}`,
    );
    const loadBefore = await loadAverage();
    const times = await interleave(variants, options.runs, WARMUP, async (v) => {
      const elapsed = await timeCommand(v.command, { ...env, ...v.env }, v.what);
      await removeJobDirs(work);
      return elapsed;
    });
    const first = await timeFirstJob(setup, work, Math.min(options.runs, 5), env);
    const load = `load average ${loadBefore} before, ${await loadAverage()} after`;
    console.log(load);
    // The download's size: the real binary's, or Deno's, which a compiled binary mostly is.
    const packed = await timeCompressions(
      { ...binary, path: options.binary ?? DENO },
      work,
      options.runs,
      env,
    );
    const report = releaseReport(
      variants,
      times,
      packed,
      (await Deno.stat(options.binary ?? DENO)).size,
    );
    report.firstJob = firstJobLine(first, binary.size);
    printReport(report);
    if (options.write) {
      const block = releaseBlock(report, binary, options.runs, options.write, machine.text, load);
      await writeSection(options.write.path, options.write.marker, block);
    }
  } finally {
    await token.close();
    await Deno.remove(work, { recursive: true });
  }
}
