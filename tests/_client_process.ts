// Runs a real third-party client (Google's auth library, the AWS SDK) in a Deno subprocess with
// explicit permissions, one round at a time: the driver writes a line on the client's stdin, the
// client does one round (gets a token or credentials) and answers with one JSON line on stdout. A
// test can change the world between rounds (rewrite a token file, wait for a refresher).

/** One client program's run. */
export interface ClientRun<Round> {
  /** Each round's JSON answer, in order. */
  rounds: Round[];
  /** The client's exit status, once its stdin was closed. */
  code: number;
  /** Everything the client wrote on stderr (warnings, Deno's download lines). */
  stderr: string;
}

export interface ClientProcessOptions {
  /** Deno permission flags for the client (`--no-prompt` is always added). */
  permissions: string[];
  /** The client's environment besides what Deno needs to find its cache. */
  env: Record<string, string>;
  /** How many rounds. @default 2 */
  rounds?: number;
  /** Runs before each round after the first, with the round's index (1, 2, …). */
  between?: (round: number) => void | Promise<void>;
  /** Per round (the first may download the client), before the client is killed. @default 120_000 */
  timeoutMs?: number;
}

/** The variables a Deno subprocess needs to find (or fill) its cache of npm packages. */
export function denoCacheEnv(): Record<string, string> {
  const env: Record<string, string> = { NO_COLOR: "1" };
  for (
    const name of ["HOME", "DENO_DIR", "XDG_CACHE_HOME", "NODE_EXTRA_CA_CERTS", "DENO_CERT"]
  ) {
    const value = Deno.env.get(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Runs SCRIPT (a module under tests/) as a line-driven client; see the file's comment. */
export async function runClientProcess<Round>(
  script: URL,
  options: ClientProcessOptions,
): Promise<ClientRun<Round>> {
  const { rounds = 2, timeoutMs = 120_000 } = options;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--no-prompt", ...options.permissions, decodeURIComponent(script.pathname)],
    cwd: decodeURIComponent(new URL("../", import.meta.url).pathname),
    clearEnv: true,
    env: { ...denoCacheEnv(), ...options.env },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  const stdin = child.stdin.getWriter();
  let buffered = "";
  const nextLine = async (): Promise<string | undefined> => {
    while (!buffered.includes("\n")) {
      const { value, done } = await lines.read();
      if (done) return undefined;
      buffered += value;
    }
    const end = buffered.indexOf("\n");
    const line = buffered.slice(0, end);
    buffered = buffered.slice(end + 1);
    return line;
  };
  const answers: Round[] = [];
  let failure: Error | undefined;
  try {
    for (let round = 0; round < rounds; round++) {
      if (round > 0) await options.between?.(round);
      await stdin.write(new TextEncoder().encode("next\n"));
      let timer: ReturnType<typeof setTimeout> | undefined;
      const line = await Promise.race([
        nextLine(),
        new Promise<"timeout">((
          resolve,
        ) => (timer = setTimeout(() => resolve("timeout"), timeoutMs))),
      ]).finally(() => clearTimeout(timer));
      if (line === "timeout") throw new Error(`The client gave no answer in round ${round}`);
      if (line === undefined) throw new Error(`The client ended before round ${round} was done`);
      answers.push(JSON.parse(line) as Round);
    }
  } catch (error) {
    failure = error as Error;
    try {
      child.kill("SIGKILL");
    } catch { /* already gone */ }
  }
  await stdin.close().catch(() => {});
  while (await nextLine() !== undefined) { /* drain */ }
  const status = await child.status;
  const text = await stderr;
  if (failure) throw new Error(`${failure.message}; its stderr:\n${text}`);
  return { rounds: answers, code: status.code, stderr: text };
}

/**
 * The client side of the protocol: calls ROUND once per line on stdin and prints its answer (or
 * `{ "error": message, "stack": … }`) as one JSON line; returns at the end of stdin.
 */
export async function serveRounds(round: () => Promise<unknown>): Promise<void> {
  let buffered = "";
  for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    while (buffered.includes("\n")) {
      buffered = buffered.slice(buffered.indexOf("\n") + 1);
      let answer: unknown;
      try {
        answer = await round();
      } catch (error) {
        answer = error instanceof Error
          ? { error: error.message, stack: error.stack }
          : { error: String(error) };
      }
      console.log(JSON.stringify(answer));
    }
  }
}
