// `deno task bench --release-binary`: what an agent without Deno pays for the release binary
// (issue 11, item 4). The hook verifies the binary's SHA-256 before every run, then starts it; the
// download happens once per version. So this times, interleaved with the Deno figures:
//   sha256sum of the binary (page cache warm, and cold when python3 can evict the file; and openssl
//   dgst for scale, which uses the CPU's SHA instructions where coreutils' sha256sum may not),
//   an exchange through the binary, an exchange through `deno run cli.ts`, and the floor;
// and, for the one-off download, how much gzip -9 and xz -6 (tools every agent has; xz nearly
// every) would save and what unpacking costs, with the bandwidth below which serving it compressed
// pays. xz packs single-threaded (-T1): one block, which any xz unpacks, and on one thread. Without --binary PATH (a `deno compile` of cli.ts) the binary is a copy of the running
// Deno, which is what `deno compile` embeds (the Deno runtime plus the program): the right size,
// and started as `deno run cli.ts`, since `deno compile` needs the internet for its runtime.

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
  SUBJECT_TOKEN,
  timeCommand,
  writeSection,
} from "./_common.ts";

const WARMUP = 2;

interface Variant {
  name: string;
  what: string;
  command: string[];
  /** Runs before each timed run, untimed. */
  before?: () => Promise<void>;
}

/** The binary being timed: its copy in the work directory, and whether it stands in for one. */
interface Binary {
  path: string;
  size: number;
  /** A copy of the running Deno, started as `deno run cli.ts`: no --binary was given. */
  standIn: boolean;
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
  /** The ratios of verifying (and exchanging) to an exchange through Deno. */
  verdict: string;
  /** One line for each compression of the download. */
  compressionLines: string[];
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

/** Copies the binary (or, without --binary, the running Deno) into WORK, read-only. */
async function copyBinary(binary: string | undefined, work: string): Promise<Binary> {
  const path = `${work}/token-exchange-${Deno.build.arch}-unknown-${Deno.build.os}-gnu`;
  await Deno.copyFile(binary ?? DENO, path);
  await Deno.chmod(path, 0o555);
  return { path, size: (await Deno.stat(path)).size, standIn: binary === undefined };
}

/** The environment every timed command runs in: no stand-in agent needed, no update check. */
function releaseEnv(): Record<string, string> {
  return {
    PATH: "/usr/local/bin:/usr/bin:/bin",
    HOME: Deno.env.get("HOME") ?? "/tmp",
    SUBJECT_TOKEN,
    DENO_NO_UPDATE_CHECK: "1",
    ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
  };
}

/** Drops the file's clean pages from the page cache, with posix_fadvise(DONTNEED): no root needed. */
function evictFromPageCache(path: string): Promise<void> {
  return run([
    "python3",
    "-c",
    "import os,sys;fd=os.open(sys.argv[1],os.O_RDONLY);os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED);os.close(fd)",
    path,
  ]);
}

/** The ways to verify and to exchange that the table compares; o and c only where they can run. */
async function releaseVariants(
  binary: Binary,
  token: { endpoint: string; host: string },
): Promise<Variant[]> {
  const cliArgs = ["--token-endpoint", token.endpoint, "--subject-token-env", "SUBJECT_TOKEN"];
  const denoRun = [
    "run",
    "--no-config",
    "--no-lock",
    "--no-remote",
    "--no-prompt",
    `--allow-net=${token.host}`,
    "--allow-env=BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*,SUBJECT_TOKEN",
    `${ROOT}/cli.ts`,
  ];
  const python = await new Deno.Command("python3", { args: ["-c", ""] }).output()
    .then((o) => o.success, () => false);
  const openssl = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
    .output().then((o) => o.success, () => false);
  return [
    {
      name: "v",
      what: "`sha256sum` of the binary, page cache warm",
      command: ["sha256sum", binary.path],
    },
    ...(openssl
      ? [{
        name: "o",
        what: "`openssl dgst -sha256` of the binary, page cache warm (for scale)",
        command: ["openssl", "dgst", "-sha256", binary.path],
      }]
      : []),
    ...(python
      ? [{
        name: "c",
        what: "`sha256sum` of the binary, cold (evicted from the page cache)",
        command: ["sha256sum", binary.path],
        before: () => evictFromPageCache(binary.path),
      }]
      : []),
    {
      name: "x",
      what: binary.standIn
        ? "exchange through the binary (stand-in: the copy runs `cli.ts`)"
        : "exchange through the binary",
      command: binary.standIn ? [binary.path, ...denoRun, ...cliArgs] : [binary.path, ...cliArgs],
    },
    {
      name: "b",
      what: "exchange through `deno run cli.ts` (Deno installed)",
      command: [DENO, ...denoRun, ...cliArgs],
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
    const file = `${binary.path}.${c.suffix}`;
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

/** The table's rows, the verdict and the compression lines, from the timed runs. */
function releaseReport(
  variants: Variant[],
  times: Map<string, number[]>,
  packed: Packed[],
  size: number,
): Report {
  const m = (name: string) => median(times.get(name)!);
  const rows = [
    ...variants.map((v) => [v.name, v.what, ms(m(v.name))]),
    ["v + x", "per job without Deno: verify, then exchange", ms(m("v") + m("x"))],
  ];
  const compressionLines = packed.map((p) => {
    // Serving it compressed pays when the bytes saved take longer to download than unpacking.
    const breakEven = (size - p.size) / (p.unpack / 1000);
    return `${p.name}: ${mib(p.size)} (${(100 * p.size / size).toFixed(0)}% of ${
      mib(size)
    }), unpacked in ${ms(p.unpack)}; it pays below ${(breakEven * 8 / 1e6).toFixed(0)} Mbit/s`;
  });
  const verdict = `(v + x)/b = ${((m("v") + m("x")) / m("b")).toFixed(2)}; v/b = ${
    (m("v") / m("b")).toFixed(2)
  }`;
  return { rows, verdict, compressionLines };
}

/** Prints the table, the verdict and the download's compressions. */
function printReport(report: Report): void {
  console.log("\n| | what | median |");
  console.log("| - | - | -: |");
  for (const row of report.rows) console.log(`| ${row.join(" | ")} |`);
  console.log(
    `\n${report.verdict}\nDownload, once per version:\n  ${report.compressionLines.join("\n  ")}`,
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
    `Without Deno, the hook verifies the release binary's SHA-256 before every run and then starts it. ${
      binary.standIn
        ? `The binary here is a stand-in of the right size, a copy of Deno ${Deno.version.deno} (what \`deno compile\` embeds), ${
          mib(binary.size)
        }`
        : `The binary is ${mib(binary.size)}`
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
    "```sh",
    `deno task bench --release-binary --runs ${runs}${
      binary.standIn ? "" : " --binary PATH"
    } --write ${write.path} --marker ${write.marker}`,
    "```",
  ].join("\n");
}

/** `deno task bench --release-binary`: verifying and starting the binary, and compressing it. */
export async function releaseBinaryBench(options: BenchOptions): Promise<void> {
  const token = startTokenEndpoint();
  const work = await Deno.makeTempDir({ prefix: "bench-release-binary-" });
  try {
    const binary = await copyBinary(options.binary, work);
    const env = releaseEnv();
    const variants = await releaseVariants(binary, token);
    const machine = await describeMachine();
    console.log(
      `Release binary: ${mib(binary.size)}${
        binary.standIn
          ? ` (stand-in: a copy of Deno ${Deno.version.deno}, what deno compile embeds)`
          : ""
      }; ${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text}`,
    );
    const loadBefore = await loadAverage();
    const times = await interleave(variants, options.runs, WARMUP, async (v) => {
      await v.before?.();
      return timeCommand(v.command, env, v.what);
    });
    const load = `load average ${loadBefore} before, ${await loadAverage()} after`;
    console.log(load);
    const packed = await timeCompressions(binary, work, options.runs, env);
    const report = releaseReport(variants, times, packed, binary.size);
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
