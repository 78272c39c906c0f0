// Whole-process benchmarks, run by `deno task bench` after the microbenchmarks. Three modes:
//
// - default (loopback): what one exchange costs a CI step, against the floor of one Deno start plus
//   one HTTP round trip, with an instant stand-in agent. Median wall time of each way to exchange,
//   its peak RSS, and the ratios b/a and c/a:
//     (a) floor   bench/floor.ts: a minimal Deno script doing the same single fetch POST
//     (b) cli     cli.ts --subject-token-env, as a user runs it
//     (c) hook    hooks/environment sourced by bash, with the stand-in buildkite-agent
//     (d) curl    curl doing the POST, for scale
// - --realistic: the hook with an agent as slow as a real one, beside version 0.x (bench/_realistic.ts)
// - --release-binary: verifying and starting the release binary, and compressing it
//   (bench/_release_binary.ts)
//
// --runs N sets the number of timed runs; --write PATH --marker NAME writes the mode's table into
// PATH between <!-- NAME --> and <!-- /NAME --> (--docs: docs/performance.md, marker performance).

import {
  type BenchOptions,
  DENO,
  describeMachine,
  floorCommand,
  interleave,
  median,
  ms,
  parseBenchArgs,
  removeJobDirs,
  ROOT,
  startTokenEndpoint,
  SUBJECT_TOKEN,
  timeCommand,
  type Variant,
  writeSection,
} from "./_common.ts";
import { realisticBench } from "./_realistic.ts";
import { releaseBinaryBench } from "./_release_binary.ts";

const WARMUP = 3;
const FIRST_RUNS = 5;

/** What the timed runs found, by variant name. */
interface Timings {
  times: Map<string, number[]>;
  medians: Map<string, number>;
  /** Peak RSS in KiB, where GNU time or Python could measure it. */
  rss: Map<string, number | undefined>;
}

/** What a fresh agent (an empty DENO_DIR) pays on its first exchange. */
interface FirstRuns {
  times: Map<string, number[]>;
  /** The download caches Deno put anything into, as "remote/", "npm/", … */
  downloads: Set<string>;
}

/** The environment every variant runs in: the stand-in agent first on PATH, and our own TMPDIR. */
function loopbackEnv(log: string, work: string): Record<string, string> {
  return {
    PATH: `${ROOT}/tests/bin:${DENO.replace(/\/[^/]*$/, "")}:/usr/local/bin:/usr/bin:/bin`,
    HOME: Deno.env.get("HOME") ?? "/tmp",
    SUBJECT_TOKEN,
    STANDIN_LOG: log,
    STANDIN_TOKEN: SUBJECT_TOKEN,
    TMPDIR: work,
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
  };
}

/** The four ways to exchange, (a) to (d), that the loopback table compares. */
function loopbackVariants(endpoint: string, host: string): Variant[] {
  return [
    {
      name: "a",
      what: "floor: minimal Deno fetch script",
      command: floorCommand(endpoint, host),
    },
    {
      name: "b",
      what: "cli.ts --subject-token-env",
      command: [
        DENO,
        "run",
        "--no-config",
        "--no-lock",
        "--no-remote",
        "--no-prompt",
        `--allow-net=${host}`,
        "--allow-env=BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*,SUBJECT_TOKEN",
        `${ROOT}/cli.ts`,
        "--token-endpoint",
        endpoint,
        "--subject-token-env",
        "SUBJECT_TOKEN",
      ],
    },
    {
      name: "c",
      what: "hooks/environment, stand-in agent",
      // Each run is a job of its own ($$, bash's PID, costs no program): the hook keeps a record in
      // $TMPDIR/token-exchange-<job ID>/ until pre-exit, and refuses a second run of the same job.
      command: [
        "bash",
        "-c",
        `export BUILDKITE_JOB_ID="bench-$$"; set -euo pipefail; source ${
          JSON.stringify(`${ROOT}/hooks/environment`)
        } >/dev/null`,
      ],
      env: { BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT: endpoint },
    },
    {
      name: "d",
      what: "curl POST, for scale",
      command: [
        "curl",
        "-sS",
        "--fail",
        "--data-urlencode",
        "grant_type=urn:ietf:params:oauth:grant-type:token-exchange",
        "--data-urlencode",
        `subject_token=${SUBJECT_TOKEN}`,
        "--data-urlencode",
        "subject_token_type=urn:ietf:params:oauth:token-type:jwt",
        endpoint,
      ],
    },
  ];
}

/** One timed run of the variant, in the base environment with its own and EXTRA on top. */
function runVariant(
  variant: Variant,
  env: Record<string, string>,
  extra: Record<string, string> = {},
): Promise<number> {
  return timeCommand(variant.command, { ...env, ...variant.env, ...extra }, variant.what)
    .finally(() => removeJobDirs(env.TMPDIR!));
}

/** Peak RSS in KiB of the variant's largest process, from GNU time or Python, if either is here. */
async function peakRss(variant: Variant, env: Record<string, string>): Promise<number | undefined> {
  const wrappers: string[][] = [
    ["/usr/bin/time", "-f", "%M"],
    [
      "python3",
      "-c",
      "import resource,subprocess,sys;subprocess.run(sys.argv[1:],check=True,stdout=subprocess.DEVNULL);print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,file=sys.stderr)",
    ],
  ];
  for (const wrapper of wrappers) {
    try {
      const output = await new Deno.Command(wrapper[0]!, {
        args: [...wrapper.slice(1), ...variant.command],
        clearEnv: true,
        env: { ...env, ...variant.env },
        stdout: "null",
        stderr: "piped",
      }).output();
      const kib = Number(new TextDecoder().decode(output.stderr).trim().split("\n").at(-1));
      if (output.success && kib > 0) return kib;
    } catch {
      // Not installed: try the next one.
    }
  }
  return undefined;
}

/**
 * Peak RSS in KiB of the largest process a hook starts: the hook goes on while Deno shuts down, so
 * Deno outlives the bash that GNU time waits for. Here a `deno` first on PATH runs the real one
 * under GNU time, which notes Deno's own peak when it ends.
 */
async function hookPeakRss(
  variant: Variant,
  env: Record<string, string>,
): Promise<number | undefined> {
  const bin = await Deno.makeTempDir({ prefix: "bench-rss-" });
  try {
    await Deno.writeTextFile(
      `${bin}/deno`,
      `#!/usr/bin/env bash\nexec /usr/bin/time -f %M -a -o ${JSON.stringify(`${bin}/rss`)} ${
        JSON.stringify(DENO)
      } "$@"\n`,
      { mode: 0o755 },
    );
    const hook = await peakRss(variant, { ...env, PATH: `${bin}:${env.PATH}` });
    for (let i = 0; i < 100; i++) {
      const noted = await Deno.readTextFile(`${bin}/rss`).catch(() => "");
      const deno = Math.max(0, ...noted.split("\n").map(Number).filter((kib) => kib > 0));
      if (deno > 0) return Math.max(deno, hook ?? 0);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    return hook;
  } finally {
    await Deno.remove(bin, { recursive: true });
  }
}

/** KiB as MiB with one decimal, or "n/a" where nothing measured it. */
function mib(kib: number | undefined): string {
  return kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;
}

/** The variant's median over the floor's (a), with two decimals. */
function ratioToFloor(timings: Timings, name: string): string {
  return (timings.medians.get(name)! / timings.medians.get("a")!).toFixed(2);
}

/** Times every variant, interleaved, then measures each one's peak RSS once. */
async function timeVariants(
  variants: Variant[],
  runs: number,
  env: Record<string, string>,
): Promise<Timings> {
  // Interleaved, so drift in the machine's load falls on every variant alike.
  const times = await interleave(variants, runs, WARMUP, (variant) => runVariant(variant, env));
  const medians = new Map(variants.map((v) => [v.name, median(times.get(v.name)!)]));
  const rss = new Map<string, number | undefined>();
  for (const variant of variants) {
    rss.set(
      variant.name,
      await (variant.name === "c" ? hookPeakRss(variant, env) : peakRss(variant, env)),
    );
  }
  return { times, medians, rss };
}

/** Prints the table of medians, minima and peak RSS, and the ratios to the floor. */
function printTable(variants: Variant[], timings: Timings, runs: number, machine: string): void {
  console.log(
    `Whole-process exchange against a token endpoint on 127.0.0.1: median of ${runs} runs after ${WARMUP} warm-up runs`,
  );
  console.log(
    `On ${machine}\n`,
  );
  console.log("| | what | median | min | peak RSS |");
  console.log("| - | - | -: | -: | -: |");
  for (const variant of variants) {
    console.log(
      `| ${variant.name} | ${variant.what} | ${
        timings.medians.get(variant.name)!.toFixed(1)
      } ms | ${Math.min(...timings.times.get(variant.name)!).toFixed(1)} ms | ${
        mib(timings.rss.get(variant.name))
      } |`,
    );
  }
  console.log(
    `\nb/a = ${ratioToFloor(timings, "b")} (target ≤ 1.15)   c/a = ${ratioToFloor(timings, "c")}`,
  );
}

/** Times a, b and c on a fresh agent: an empty DENO_DIR each run, so Deno transpiles and caches. */
async function timeFirstRuns(variants: Variant[], env: Record<string, string>): Promise<FirstRuns> {
  const times = new Map<string, number[]>(["a", "b", "c"].map((name) => [name, []]));
  const downloads = new Set<string>();
  for (let i = 0; i < FIRST_RUNS; i++) {
    for (const variant of variants.filter((v) => times.has(v.name))) {
      const denoDir = await Deno.makeTempDir({ prefix: "empty-deno-dir-" });
      times.get(variant.name)!.push(await runVariant(variant, env, { DENO_DIR: denoDir }));
      // Anything in a download cache is a download (Deno makes an empty npm/ on every start).
      for (const name of ["remote", "npm", "deps", "dl", "registries"]) {
        const entries = await Array.fromAsync(Deno.readDir(`${denoDir}/${name}`)).catch(() => []);
        if (entries.length > 0) downloads.add(`${name}/`);
      }
      await Deno.remove(denoDir, { recursive: true });
    }
  }
  return { times, downloads };
}

/** Prints the first runs' medians and what Deno downloaded. */
function printFirstRuns(variants: Variant[], first: FirstRuns): void {
  console.log(`\nFirst run on a fresh agent (empty DENO_DIR), median of ${FIRST_RUNS}:`);
  for (const [name, values] of first.times) {
    const variant = variants.find((v) => v.name === name)!;
    console.log(`  ${name} ${variant.what}: ${median(values).toFixed(1)} ms`);
  }
  console.log(
    `  downloaded into DENO_DIR: ${
      first.downloads.size === 0 ? "nothing" : [...first.downloads].join(", ")
    }`,
  );
}

/** The block --write puts into the Markdown file: the table, and the first runs in a sentence. */
function loopbackBlock(
  variants: Variant[],
  timings: Timings,
  first: FirstRuns,
  runs: number,
  machine: string,
): string {
  const what: Record<string, string> = {
    a: "floor: a minimal Deno script doing the same fetch POST",
    b: "`cli.ts --subject-token-env`",
    c: "`hooks/environment`, with the stand-in agent",
    d: "`curl` doing the POST, for scale",
  };
  const firstMs = (name: string) => Math.round(median(first.times.get(name)!));
  return [
    "",
    `Whole-process wall time against a token endpoint on 127.0.0.1, median of ${runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine}:`,
    "",
    "| | what | median | peak RSS |",
    "| - | - | -: | -: |",
    ...variants.map((v) =>
      `| ${v.name} | ${what[v.name]} | ${ms(timings.medians.get(v.name)!)} | ${
        mib(timings.rss.get(v.name))
      } |`
    ),
    "",
    `b/a = ${ratioToFloor(timings, "b")} (the bar is 1.15) and c/a = ${
      ratioToFloor(timings, "c")
    }. On a fresh agent (an empty \`DENO_DIR\`), the first exchange takes ${
      firstMs("b")
    } ms through the CLI and ${firstMs("c")} ms through the hook (${
      firstMs("a")
    } ms for the floor), and ${
      first.downloads.size === 0
        ? "nothing is downloaded"
        : `Deno downloaded into ${[...first.downloads].join(", ")}`
    }: the hook runs \`deno\` with \`--no-remote\`, and the plugin has no remote imports.`,
    "",
  ].join("\n");
}

/** The default mode: the table of (a) to (d), then the first runs on a fresh agent. */
async function loopbackBench(options: BenchOptions): Promise<void> {
  const { endpoint, host, close } = startTokenEndpoint();
  const log = await Deno.makeTempFile();
  const work = await Deno.makeTempDir();
  const env = loopbackEnv(log, work);
  const variants = loopbackVariants(endpoint, host);
  try {
    const timings = await timeVariants(variants, options.runs, env);
    const machine = (await describeMachine()).text;
    printTable(variants, timings, options.runs, machine);
    const first = await timeFirstRuns(variants, env);
    printFirstRuns(variants, first);
    if (options.write) {
      const block = loopbackBlock(variants, timings, first, options.runs, machine);
      await writeSection(options.write.path, options.write.marker, block);
    }
  } finally {
    await close();
    await Deno.remove(log);
    await Deno.remove(work, { recursive: true });
  }
}

const options = parseBenchArgs(Deno.args);
if (options.mode === "realistic") await realisticBench(options);
else if (options.mode === "release-binary") await releaseBinaryBench(options);
else await loopbackBench(options);
