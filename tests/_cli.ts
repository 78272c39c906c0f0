// Runs cli.ts as a subprocess, as a user or a hook would, with a recorded stand-in buildkite-agent
// first on PATH, and checks that nothing secret reached its output.

import { assertNoSecrets, ISSUED_TOKEN, SUBJECT_TOKEN } from "./_tokens.ts";

export const ROOT = new URL("../", import.meta.url);
export const CLI = decodeURIComponent(new URL("cli.ts", ROOT).pathname);
export const STANDIN_BIN = decodeURIComponent(new URL("tests/bin", ROOT).pathname);
const DENO_BIN_DIR = Deno.execPath().replace(/\/[^/]*$/, "");

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** The stand-in agent's calls, each as its argument list. */
  agentCalls: string[][];
}

export interface CliOptions {
  /** Extra environment variables; the environment is otherwise minimal. */
  env?: Record<string, string>;
  /** Text for stdin. */
  stdin?: string;
  /** Leave the stand-in agent off PATH. */
  noAgent?: boolean;
  /** Deno permission flags instead of the defaults. */
  permissions?: string[];
  /** The working directory. */
  cwd?: string;
  /**
   * More secrets to look for, asked for once the run is over (a token a server issued is known
   * only then): `hidden` may appear nowhere, `issued` only on stdout.
   */
  secrets?: () => { hidden?: readonly string[]; issued?: readonly string[] };
}

/** The variables a Deno subprocess needs to find its cache, and coverage collection if it is on. */
export function baseEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME", "DENO_COVERAGE_DIR"]) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  // Subprocesses may run elsewhere; their coverage goes where the test run's does.
  const coverage = env["DENO_COVERAGE_DIR"];
  if (coverage !== undefined && !coverage.startsWith("/")) {
    env["DENO_COVERAGE_DIR"] = `${Deno.cwd()}/${coverage}`;
  }
  return env;
}

export async function runCli(args: string[], options: CliOptions = {}): Promise<CliResult> {
  const log = await Deno.makeTempFile({ prefix: "standin-agent-" });
  try {
    const command = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--no-prompt",
        ...(options.permissions ??
          ["--allow-net=127.0.0.1", "--allow-env", "--allow-run=buildkite-agent", "--allow-read"]),
        CLI,
        ...args,
      ],
      clearEnv: true,
      cwd: options.cwd,
      env: {
        ...baseEnv(),
        PATH: [...(options.noAgent ? [] : [STANDIN_BIN]), DENO_BIN_DIR, "/usr/bin", "/bin"].join(
          ":",
        ),
        STANDIN_LOG: log,
        STANDIN_TOKEN: SUBJECT_TOKEN,
        ...options.env,
      },
      stdin: options.stdin === undefined ? "null" : "piped",
      stdout: "piped",
      stderr: "piped",
    });
    const child = command.spawn();
    if (options.stdin !== undefined) {
      const writer = child.stdin.getWriter();
      await writer.write(new TextEncoder().encode(options.stdin));
      await writer.close();
    }
    const output = await child.output();
    const result = {
      code: output.code,
      stdout: new TextDecoder().decode(output.stdout),
      stderr: new TextDecoder().decode(output.stderr),
      agentCalls: (await Deno.readTextFile(log)).split("\n").filter((line) => line).map((line) =>
        line.split("\x1f")
      ),
    };
    const { hidden = [], issued = [] } = options.secrets?.() ?? {};
    assertNoSecrets(result.stderr, `stderr of cli.ts ${args.join(" ")}`, [], [
      ...hidden,
      ...issued,
    ]);
    assertNoSecrets(
      result.stdout,
      `stdout of cli.ts ${args.join(" ")}`,
      [ISSUED_TOKEN, ISSUED_TOKEN.split(".")[2]!],
      hidden,
    );
    return result;
  } finally {
    await Deno.remove(log);
    await Deno.remove(`${log}.redacted`).catch(() => {});
  }
}
