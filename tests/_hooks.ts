// Runs the plugin's hooks the way the Buildkite agent does: sourced by bash, with the plugin's
// options as BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables and a recorded stand-in buildkite-agent on
// PATH. Checks that nothing secret reached the hook's output.

import { baseEnv, ROOT, STANDIN_BIN } from "./_cli.ts";
import { assertNoSecrets, SUBJECT_TOKEN } from "./_tokens.ts";

export const PLUGIN_DIR = decodeURIComponent(ROOT.pathname).replace(/\/$/, "");
/**
 * The bash that sources the hooks: TOKEN_EXCHANGE_TEST_BASH names another (macOS's bash 3.2, say:
 * see CONTRIBUTING.md), else the first on PATH.
 */
export const HOOK_BASH = Deno.env.get("TOKEN_EXCHANGE_TEST_BASH") || "bash";
/** Whether HOOK_BASH is 4.1 or later, which the early redactor needs (bash 3.2 goes without). */
export const HOOK_BASH_4_1 = (await new Deno.Command(HOOK_BASH, {
  args: ["-c", "((BASH_VERSINFO[0] > 4 || (BASH_VERSINFO[0] == 4 && BASH_VERSINFO[1] >= 1)))"],
}).output()).success;
export const DENO_BIN_DIR = Deno.execPath().replace(/\/[^/]*$/, "");
const SYSTEM_PATH = ["/usr/local/bin", "/usr/bin", "/bin"];

export interface HookResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The stand-in agent's calls, each as its argument list. */
  agentCalls: string[][];
  /** What `redactor add` read on stdin, one entry per call. */
  redacted: string[];
  /** The exported environment after the hooks ran (only when they all succeeded). */
  exported: Record<string, string>;
  /** What the hooks left in TMPDIR (directories end in "/"). */
  leftovers: string[];
  /** What the hooks left in the job's private directory, recursively, sorted (directories end in "/"). */
  privateFiles: string[];
  /** The text of each file in the job's private directory, by its path there. */
  privateContents: Record<string, string>;
  /** The job's private directory (gone once the test is over). */
  privateDir: string;
}

export interface HookOptions {
  /** Plugin options by their plugin.yml names: strings, booleans, numbers or lists. */
  options?: Record<string, string | boolean | number | string[]>;
  /** Other variables for the job's environment. */
  env?: Record<string, string>;
  /** The directories to search for programs instead of the default (stand-in agent, deno, system). */
  path?: string[];
  /** The plugin checkout to source the hooks from. */
  pluginDir?: string;
  /** The working directory (the job's checkout); a fresh TMPDIR by default. */
  cwd?: string;
}

/** The BUILDKITE_JOB_ID the hooks run with, unless a test sets another. */
export const JOB_ID = "0184990a-477b-4fa8-9968-496074483cee";

/** Every path below DIR, relative to it (directories end in "/"); none when DIR does not exist. */
export async function listTree(dir: string, prefix = ""): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(`${dir}/${prefix}`)) {
      const name = `${prefix}${entry.name}${entry.isDirectory ? "/" : ""}`;
      names.push(name);
      if (entry.isDirectory) names.push(...await listTree(dir, name));
    }
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

/** The variables Buildkite sets for the plugin's options (arrays as _0, _1, …). */
export function pluginEnv(options: HookOptions["options"] = {}): Record<string, string> {
  const env: Record<string, string> = {};
  for (const [name, value] of Object.entries(options)) {
    const key = `BUILDKITE_PLUGIN_TOKEN_EXCHANGE_${name.toUpperCase().replaceAll("-", "_")}`;
    if (Array.isArray(value)) value.forEach((item, i) => (env[`${key}_${i}`] = item));
    else env[key] = String(value);
  }
  return env;
}

/** The default PATH for hooks: the stand-in agent, then deno, then the system. */
export function defaultPath(): string[] {
  return [STANDIN_BIN, DENO_BIN_DIR, ...SYSTEM_PATH];
}

/**
 * A directory of links to every program in the system directories but deno, so a hook sees a
 * machine without Deno. Remove it when done.
 */
export async function pathWithoutDeno(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "no-deno-bin-" });
  for (const system of SYSTEM_PATH) {
    for await (const entry of Deno.readDir(system)) {
      if (entry.name === "deno" || entry.isDirectory) continue;
      await Deno.symlink(`${system}/${entry.name}`, `${dir}/${entry.name}`).catch(() => {});
    }
  }
  return dir;
}

/**
 * Sources each hook in turn in one bash process, as the agent's hook wrapper does, then records the
 * exported environment into a file (never to the output that is checked for secrets).
 */
export async function runHooks(hooks: string[], options: HookOptions = {}): Promise<HookResult> {
  const work = await Deno.makeTempDir({ prefix: "hook-test-" });
  const log = `${work}/agent.log`;
  const report = `${work}/exported`;
  await Deno.writeTextFile(log, "");
  const pluginDir = options.pluginDir ?? PLUGIN_DIR;
  const script = [
    "set -euo pipefail",
    ...hooks.map((hook) => `source ${JSON.stringify(`${pluginDir}/hooks/${hook}`)}`),
    `env -0 > ${JSON.stringify(report)}`,
  ].join("\n");
  try {
    const env: Record<string, string> = {
      ...baseEnv(),
      PATH: (options.path ?? defaultPath()).join(":"),
      TMPDIR: work,
      BUILDKITE_JOB_ID: JOB_ID,
      STANDIN_LOG: log,
      STANDIN_TOKEN: SUBJECT_TOKEN,
      ...pluginEnv(options.options),
      ...options.env,
    };
    const output = await new Deno.Command(HOOK_BASH, {
      args: ["-c", script],
      cwd: options.cwd ?? work,
      clearEnv: true,
      env,
      stdout: "piped",
      stderr: "piped",
    }).output();
    const exported: Record<string, string> = {};
    const reportText = await Deno.readTextFile(report).catch(() => "");
    for (const entry of reportText.split("\0").filter((e) => e)) {
      const eq = entry.indexOf("=");
      exported[entry.slice(0, eq)] = entry.slice(eq + 1);
    }
    const redactedText = await Deno.readTextFile(`${log}.redacted`).catch(() => "");
    const result: HookResult = {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      agentCalls: (await Deno.readTextFile(log)).split("\n").filter((l) => l).map((l) =>
        l.split("\x1f")
      ),
      redacted: redactedText.split("\n").filter((l) => l),
      exported,
      leftovers: [],
      privateFiles: [],
      privateContents: {},
      privateDir: `${env.TMPDIR}/token-exchange-${env.BUILDKITE_JOB_ID}`,
    };
    for await (const entry of Deno.readDir(work)) {
      if (!entry.name.startsWith("agent.log") && entry.name !== "exported") {
        result.leftovers.push(entry.name + (entry.isDirectory ? "/" : ""));
      }
    }
    result.privateFiles = (await listTree(result.privateDir)).sort();
    for (const file of result.privateFiles.filter((f) => !f.endsWith("/"))) {
      const path = `${result.privateDir}/${file}`;
      if ((await Deno.lstat(path)).isFile) {
        result.privateContents[file] = await Deno.readTextFile(path);
      }
    }
    assertNoSecrets(result.stdout, `stdout of hooks ${hooks.join(", ")}`);
    assertNoSecrets(result.stderr, `stderr of hooks ${hooks.join(", ")}`);
    return result;
  } finally {
    await Deno.remove(work, { recursive: true });
  }
}
