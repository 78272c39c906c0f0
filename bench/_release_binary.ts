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

const mib = (bytes: number) => `${(bytes / 1024 / 1024).toFixed(1)} MiB`;

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

export async function releaseBinaryBench(options: BenchOptions): Promise<void> {
  const token = startTokenEndpoint();
  const work = await Deno.makeTempDir({ prefix: "bench-release-binary-" });
  try {
    const target = `${work}/token-exchange-${Deno.build.arch}-unknown-${Deno.build.os}-gnu`;
    const standIn = options.binary === undefined;
    await Deno.copyFile(options.binary ?? DENO, target);
    await Deno.chmod(target, 0o555);
    const size = (await Deno.stat(target)).size;
    const env: Record<string, string> = {
      PATH: "/usr/local/bin:/usr/bin:/bin",
      HOME: Deno.env.get("HOME") ?? "/tmp",
      SUBJECT_TOKEN,
      DENO_NO_UPDATE_CHECK: "1",
      ...(Deno.env.get("DENO_DIR") ? { DENO_DIR: Deno.env.get("DENO_DIR")! } : {}),
    };
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
    // posix_fadvise(DONTNEED) drops the file's clean pages from the page cache: no root needed.
    const evict = () =>
      run([
        "python3",
        "-c",
        "import os,sys;fd=os.open(sys.argv[1],os.O_RDONLY);os.posix_fadvise(fd,0,0,os.POSIX_FADV_DONTNEED);os.close(fd)",
        target,
      ]);

    const openssl = await new Deno.Command("openssl", { args: ["version"], stdout: "null" })
      .output().then((o) => o.success, () => false);
    const variants: Variant[] = [
      {
        name: "v",
        what: "`sha256sum` of the binary, page cache warm",
        command: ["sha256sum", target],
      },
      ...(openssl
        ? [{
          name: "o",
          what: "`openssl dgst -sha256` of the binary, page cache warm (for scale)",
          command: ["openssl", "dgst", "-sha256", target],
        }]
        : []),
      ...(python
        ? [{
          name: "c",
          what: "`sha256sum` of the binary, cold (evicted from the page cache)",
          command: ["sha256sum", target],
          before: evict,
        }]
        : []),
      {
        name: "x",
        what: standIn
          ? "exchange through the binary (stand-in: the copy runs `cli.ts`)"
          : "exchange through the binary",
        command: standIn ? [target, ...denoRun, ...cliArgs] : [target, ...cliArgs],
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
    const machine = await describeMachine();
    console.log(
      `Release binary: ${mib(size)}${
        standIn ? ` (stand-in: a copy of Deno ${Deno.version.deno}, what deno compile embeds)` : ""
      }; ${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text}`,
    );
    const loadBefore = await loadAverage();
    const times = await interleave(variants, options.runs, WARMUP, async (v) => {
      await v.before?.();
      return timeCommand(v.command, env, v.what);
    });
    const load = `load average ${loadBefore} before, ${await loadAverage()} after`;
    console.log(load);
    const m = (name: string) => median(times.get(name)!);

    // The download, once per version: compressed sizes and the time to unpack.
    const compressions = [
      { name: "gzip -9", suffix: "gz", pack: ["gzip", "-9", "-c"], unpack: "gzip -dc" },
      { name: "xz -6", suffix: "xz", pack: ["xz", "-6", "-T1", "-c"], unpack: "xz -dc" },
    ];
    const packed: { name: string; size: number; unpack: number }[] = [];
    for (const c of compressions) {
      const file = `${target}.${c.suffix}`;
      const started = performance.now();
      await run(["bash", "-c", `${c.pack.join(" ")} "$1" >"$2"`, "_", target, file]);
      const packSeconds = (performance.now() - started) / 1000;
      const unpackTimes: number[] = [];
      for (let i = 0; i < Math.min(options.runs, 5); i++) {
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

    const rows = [
      ...variants.map((v) => [v.name, v.what, ms(m(v.name))]),
      ["v + x", "per job without Deno: verify, then exchange", ms(m("v") + m("x"))],
    ];
    console.log("\n| | what | median |");
    console.log("| - | - | -: |");
    for (const row of rows) console.log(`| ${row.join(" | ")} |`);
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
    console.log(`\n${verdict}\nDownload, once per version:\n  ${compressionLines.join("\n  ")}`);

    if (options.write) {
      const block = [
        `Without Deno, the hook verifies the release binary's SHA-256 before every run and then starts it. ${
          standIn
            ? `The binary here is a stand-in of the right size, a copy of Deno ${Deno.version.deno} (what \`deno compile\` embeds), ${
              mib(size)
            }`
            : `The binary is ${mib(size)}`
        }; median of ${options.runs} interleaved runs after ${WARMUP} warm-up runs, on ${machine.text} (${load}).`,
        "",
        "| | what | median |",
        "| - | - | -: |",
        ...rows.map((row) => `| ${row.join(" | ")} |`),
        "",
        `${verdict}. The download happens once per version: ${compressionLines.join("; ")}.`,
        "",
        "```sh",
        `deno task bench --release-binary --runs ${options.runs}${
          standIn ? "" : " --binary PATH"
        } --write ${options.write.path} --marker ${options.write.marker}`,
        "```",
      ].join("\n");
      await writeSection(options.write.path, options.write.marker, block);
    }
  } finally {
    await token.close();
    await Deno.remove(work, { recursive: true });
  }
}
