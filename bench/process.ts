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

async function loopbackBench(options: BenchOptions): Promise<void> {
  const RUNS = options.runs;
  const { endpoint, host, close } = startTokenEndpoint();
  const log = await Deno.makeTempFile();
  const work = await Deno.makeTempDir();
  const baseEnv: Record<string, string> = {
    PATH: `${ROOT}/tests/bin:${DENO.replace(/\/[^/]*$/, "")}:/usr/local/bin:/usr/bin:/bin`,
    HOME: Deno.env.get("HOME") ?? "/tmp",
    SUBJECT_TOKEN,
    STANDIN_LOG: log,
    STANDIN_TOKEN: SUBJECT_TOKEN,
    TMPDIR: work,
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
  };

  const variants: Variant[] = [
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
      command: [
        "bash",
        "-c",
        `set -euo pipefail; source ${JSON.stringify(`${ROOT}/hooks/environment`)} >/dev/null`,
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

  function run(variant: Variant, extraEnv: Record<string, string> = {}): Promise<number> {
    return timeCommand(variant.command, { ...baseEnv, ...variant.env, ...extraEnv }, variant.what);
  }

  /** Peak RSS in KiB of the variant's largest process, from GNU time or Python, if either is here. */
  async function peakRss(variant: Variant): Promise<number | undefined> {
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
          env: { ...baseEnv, ...variant.env },
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

  try {
    // Interleaved, so drift in the machine's load falls on every variant alike.
    const times = await interleave(variants, RUNS, WARMUP, (variant) => run(variant));
    const medians = new Map(variants.map((v) => [v.name, median(times.get(v.name)!)]));
    const rss = new Map<string, number | undefined>();
    for (const variant of variants) rss.set(variant.name, await peakRss(variant));

    const machine = await describeMachine();
    console.log(
      `Whole-process exchange against a token endpoint on 127.0.0.1: median of ${RUNS} runs after ${WARMUP} warm-up runs`,
    );
    console.log(
      `On ${machine.text}\n`,
    );
    console.log("| | what | median | min | peak RSS |");
    console.log("| - | - | -: | -: | -: |");
    for (const variant of variants) {
      const kib = rss.get(variant.name);
      console.log(
        `| ${variant.name} | ${variant.what} | ${medians.get(variant.name)!.toFixed(1)} ms | ${
          Math.min(...times.get(variant.name)!).toFixed(1)
        } ms | ${kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`} |`,
      );
    }
    const ratio = (x: string) => (medians.get(x)! / medians.get("a")!).toFixed(2);
    console.log(`\nb/a = ${ratio("b")} (target ≤ 1.15)   c/a = ${ratio("c")}`);

    // A fresh agent: an empty DENO_DIR, so Deno transpiles and caches cli.ts on the way.
    const firstRuns = new Map<string, number[]>(["a", "b", "c"].map((name) => [name, []]));
    const downloads = new Set<string>();
    for (let i = 0; i < FIRST_RUNS; i++) {
      for (const variant of variants.filter((v) => firstRuns.has(v.name))) {
        const denoDir = await Deno.makeTempDir({ prefix: "empty-deno-dir-" });
        firstRuns.get(variant.name)!.push(await run(variant, { DENO_DIR: denoDir }));
        // Anything in a download cache is a download (Deno makes an empty npm/ on every start).
        for (const name of ["remote", "npm", "deps", "dl", "registries"]) {
          const entries = await Array.fromAsync(Deno.readDir(`${denoDir}/${name}`)).catch(() => []);
          if (entries.length > 0) downloads.add(`${name}/`);
        }
        await Deno.remove(denoDir, { recursive: true });
      }
    }
    console.log(`\nFirst run on a fresh agent (empty DENO_DIR), median of ${FIRST_RUNS}:`);
    for (const [name, values] of firstRuns) {
      const variant = variants.find((v) => v.name === name)!;
      console.log(`  ${name} ${variant.what}: ${median(values).toFixed(1)} ms`);
    }
    console.log(
      `  downloaded into DENO_DIR: ${downloads.size === 0 ? "nothing" : [...downloads].join(", ")}`,
    );

    if (options.write) {
      const mib = (kib: number | undefined) =>
        kib === undefined ? "n/a" : `${(kib / 1024).toFixed(1)} MiB`;
      const what: Record<string, string> = {
        a: "floor: a minimal Deno script doing the same fetch POST",
        b: "`cli.ts --subject-token-env`",
        c: "`hooks/environment`, with the stand-in agent",
        d: "`curl` doing the POST, for scale",
      };
      const first = (name: string) => Math.round(median(firstRuns.get(name)!));
      const block = [
        "",
        `Whole-process wall time against a token endpoint on 127.0.0.1, median of ${RUNS} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text}:`,
        "",
        "| | what | median | peak RSS |",
        "| - | - | -: | -: |",
        ...variants.map((v) =>
          `| ${v.name} | ${what[v.name]} | ${ms(medians.get(v.name)!)} | ${mib(rss.get(v.name))} |`
        ),
        "",
        `b/a = ${ratio("b")} (the bar is 1.15) and c/a = ${
          ratio("c")
        }. On a fresh agent (an empty \`DENO_DIR\`), the first exchange takes ${
          first("b")
        } ms through the CLI and ${first("c")} ms through the hook (${
          first("a")
        } ms for the floor), and ${
          downloads.size === 0
            ? "nothing is downloaded"
            : `Deno downloaded into ${[...downloads].join(", ")}`
        }: the hook runs \`deno\` with \`--no-remote\`, and the plugin has no remote imports.`,
        "",
      ].join("\n");
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
