// Which processes a hook starts, from `strace -f`: every fork and exec, sorted into the agent's
// calls, Deno, and anything else (another program, or a bash subshell that runs none). What runs
// inside an agent call is the agent's business and is not counted.

/** The processes a command started, by kind. */
export interface ProcessSummary {
  /** Each `buildkite-agent` call, by its subcommand (`oidc request-token`, `redactor add`). */
  agentCalls: string[];
  /** Deno processes (`deno`, or the release binary when `denoNames` names it). */
  deno: number;
  /** Any other program started, by the name it was run as. */
  programs: string[];
  /** Forked copies of the shell that ran no program of their own (subshells). */
  subshells: number;
}

interface Traced {
  parent?: number;
  execs: { path: string; argv: string[] }[];
}

/**
 * Sorts the processes in an `strace -f -e trace=execve,clone,clone3,fork,vfork` log (pids on every
 * line, as with `-o FILE`). The first exec is the traced command itself and is not counted.
 */
export function summarizeTrace(log: string, denoNames: string[] = ["deno"]): ProcessSummary {
  const processes = new Map<number, Traced>();
  const threadOwner = new Map<number, number>();
  const pending = new Map<number, string>();
  let root: number | undefined;
  const owner = (pid: number) => threadOwner.get(pid) ?? pid;
  const process = (pid: number) => {
    let traced = processes.get(pid);
    if (!traced) processes.set(pid, traced = { execs: [] });
    return traced;
  };

  for (const raw of log.split("\n")) {
    const match = /^(\d+)\s+(.*)$/.exec(raw);
    if (!match) continue;
    const pid = Number(match[1]);
    let call = match[2]!;
    if (call.endsWith("<unfinished ...>")) {
      pending.set(pid, call.slice(0, -"<unfinished ...>".length));
      continue;
    }
    const resumed = /^<\.\.\. \w+ resumed>(.*)$/.exec(call);
    if (resumed) {
      call = (pending.get(pid) ?? "") + resumed[1]!;
      pending.delete(pid);
    }
    const result = /\)\s+=\s+(-?\d+)/.exec(call.slice(call.lastIndexOf(")")));
    if (!result) continue;
    const value = Number(result[1]);
    if (/^(clone3?|fork|vfork)\(/.test(call) && value > 0) {
      if (/CLONE_THREAD/.test(call)) threadOwner.set(value, owner(pid));
      else process(value).parent = owner(pid);
    } else if (call.startsWith("execve(") && value === 0) {
      const exec = /^execve\("((?:[^"\\]|\\.)*)", \[((?:"(?:[^"\\]|\\.)*"(?:\.\.\.)?(?:, )?)*)/
        .exec(call);
      if (!exec) continue;
      const argv = [...exec[2]!.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1]!);
      process(pid).execs.push({ path: exec[1]!, argv });
      root ??= pid;
    }
  }

  const summary: ProcessSummary = { agentCalls: [], deno: 0, programs: [], subshells: 0 };
  const name = (traced: Traced) => traced.execs[0]?.path.replace(/^.*\//, "");
  const children = new Map<number, number[]>();
  for (const [pid, traced] of processes) {
    if (traced.parent === undefined) continue;
    children.set(traced.parent, [...(children.get(traced.parent) ?? []), pid]);
  }
  const visit = (pid: number) => {
    for (const child of children.get(pid) ?? []) {
      const traced = processes.get(child)!;
      const program = name(traced);
      if (program === "buildkite-agent") {
        // The agent's own work (a stand-in's shell, say) is not the plugin's.
        summary.agentCalls.push(traced.execs[0]!.argv.slice(1, 3).join(" "));
        continue;
      }
      if (program === undefined) summary.subshells++;
      else if (denoNames.includes(program)) summary.deno++;
      else summary.programs.push(program);
      visit(child);
    }
  };
  if (root !== undefined) visit(root);
  return summary;
}

/** One line for a report: the processes by kind, with their count. */
export function describeSummary(summary: ProcessSummary): string {
  const parts = [
    ...summary.agentCalls.map((call) => `buildkite-agent ${call}`),
    ...(summary.deno ? [`deno${summary.deno > 1 ? ` ×${summary.deno}` : ""}`] : []),
    ...Object.entries(
      summary.programs.reduce<Record<string, number>>(
        (counts, program) => ({ ...counts, [program]: (counts[program] ?? 0) + 1 }),
        {},
      ),
    ).map(([program, count]) => `${program}${count > 1 ? ` ×${count}` : ""}`),
    ...(summary.subshells
      ? [`${summary.subshells} bash subshell${summary.subshells > 1 ? "s" : ""}`]
      : []),
  ];
  const total = summary.agentCalls.length + summary.deno + summary.programs.length +
    summary.subshells;
  return `${total} (${parts.join(", ") || "none"})`;
}

/**
 * Runs `command` under `strace -f` and sorts the processes it started; undefined when strace
 * cannot run here (not installed, or ptrace not allowed).
 */
export async function traceProcesses(
  command: string[],
  env: Record<string, string>,
  denoNames?: string[],
): Promise<ProcessSummary | undefined> {
  const log = await Deno.makeTempFile({ prefix: "bench-strace-" });
  try {
    const output = await new Deno.Command("strace", {
      args: [
        "-f",
        "-qq",
        "-s",
        "256",
        "-e",
        "trace=execve,clone,clone3,fork,vfork",
        "-e",
        "signal=none",
        "-o",
        log,
        ...command,
      ],
      clearEnv: true,
      env,
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).output();
    const text = await Deno.readTextFile(log);
    if (!output.success) {
      if (!text.includes("execve(")) return undefined;
      throw new Error(
        `${command.join(" ")} failed under strace: ${
          new TextDecoder().decode(output.stderr).trim()
        }`,
      );
    }
    return summarizeTrace(text, denoNames);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw error;
  } finally {
    await Deno.remove(log);
  }
}
