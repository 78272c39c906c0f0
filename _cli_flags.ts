// The CLI's flags: the table of every flag and the BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variable it
// falls back to, argv parsing, the --help text, and reading an option's raw value from its flag or
// its variable (remembering which, so that a message names it as the user wrote it). What the
// values must be is _cli_config.ts's and _subject_token.ts's.
//
// A small table-driven parser rather than node:util's parseArgs: importing node:util costs about
// 6 ms of start-up, a third of a whole exchange (see docs/performance.md).

import { TOKEN_TYPES } from "./_constants.ts";
import { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS } from "./_http.ts";
import { oneLine } from "./_redact.ts";

/** The prefix of the variables Buildkite sets from the plugin's options. */
export const ENV_PREFIX = "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_";

/** A bad flag, option or variable: exit status 2. Its message is one line, whatever it quotes. */
export class UsageError extends Error {
  /** The name of the error class. */
  override name = "UsageError";

  /** @param message What is wrong and what to change. */
  constructor(message: string) {
    super(oneLine(message));
  }
}

/** How a flag takes its value. */
type Kind =
  /** One value: `--flag VALUE` or `--flag=VALUE`. */
  | "string"
  /** Any number of values, one per occurrence. */
  | "list"
  /** `--flag` alone (true), or `--flag=true|false`. */
  | "boolean"
  /** `--flag` alone, no value: `--help`, `--version`. */
  | "switch";

interface FlagSpec {
  kind: Kind;
  /** The BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* suffix it falls back to. */
  env?: string;
  /** The value shown in the help text. */
  arg?: string;
  help: string;
}

/** Every flag, in the order the help text lists them. */
export const FLAGS: Readonly<Record<string, FlagSpec>> = {
  "token-endpoint": {
    kind: "string",
    env: "TOKEN_ENDPOINT",
    arg: "URL",
    help: "RFC 8693 token endpoint (https, or http to loopback)",
  },
  issuer: {
    kind: "string",
    env: "ISSUER",
    arg: "URL",
    help: "discover the token endpoint from this issuer's metadata instead",
  },
  audience: {
    kind: "string",
    env: "AUDIENCE",
    arg: "AUD",
    help: "aud of the CI system's OIDC token [Buildkite default: buildkite]",
  },
  lifetime: {
    kind: "string",
    env: "LIFETIME",
    arg: "SECONDS",
    help: "lifetime of the Buildkite OIDC token [default: the agent's]",
  },
  claim: {
    kind: "list",
    env: "CLAIMS",
    arg: "CLAIM",
    help: "optional claim for the Buildkite OIDC token (repeatable)",
  },
  "subject-token-type": {
    kind: "string",
    env: "SUBJECT_TOKEN_TYPE",
    arg: "URI",
    help: `subject_token_type [default: ${TOKEN_TYPES.jwt}]`,
  },
  "target-audience": {
    kind: "list",
    env: "TARGET_AUDIENCE",
    arg: "AUD",
    help: "RFC 8693 audience parameter (repeatable)",
  },
  resource: {
    kind: "list",
    env: "RESOURCE",
    arg: "URI",
    help: "RFC 8693 resource parameter, an absolute URI (repeatable)",
  },
  scope: { kind: "list", env: "SCOPE", arg: "SCOPE", help: "scope (repeatable, space-joined)" },
  "requested-token-type": {
    kind: "string",
    env: "REQUESTED_TOKEN_TYPE",
    arg: "URI",
    help: "requested_token_type",
  },
  "extra-param": {
    kind: "list",
    env: "EXTRA_PARAMS",
    arg: "NAME=VALUE",
    help: "a form parameter beyond RFC 8693, such as Dex's connector_id (repeatable)",
  },
  "client-id": { kind: "string", env: "CLIENT_ID", arg: "ID", help: "client ID" },
  "client-secret-env": {
    kind: "string",
    env: "CLIENT_SECRET_ENV",
    arg: "NAME",
    help: "environment variable holding the client secret",
  },
  "client-auth": {
    kind: "string",
    env: "CLIENT_AUTH",
    arg: "HOW",
    help:
      "basic or post (the client secret), or assertion (the subject token, RFC 7523) [default: basic]",
  },
  "grant-type": {
    kind: "string",
    env: "GRANT_TYPE",
    arg: "GRANT",
    help:
      "token-exchange (RFC 8693), jwt-bearer (RFC 7523) or client-credentials [default: token-exchange]",
  },
  timeout: {
    kind: "string",
    env: "TIMEOUT",
    arg: "SECONDS",
    help: `time for each HTTP attempt, headers and body [default: ${DEFAULT_TIMEOUT_MS / 1000}]`,
  },
  retries: {
    kind: "string",
    env: "RETRIES",
    arg: "N",
    help: `extra attempts on transient failure [default: ${DEFAULT_RETRIES}]`,
  },
  "ca-file": {
    kind: "string",
    env: "CA_FILE",
    arg: "PATH",
    help: "PEM file of a CA to trust beside the system's (an endpoint with a private CA)",
  },
  "subject-token-env": {
    kind: "string",
    arg: "NAME",
    help: "read the subject token from this environment variable",
  },
  "subject-token-file": {
    kind: "string",
    arg: "PATH",
    help: "read the subject token from this file (- for stdin)",
  },
  "subject-token-source": {
    kind: "string",
    arg: "SOURCE",
    help: "buildkite, github-actions or gitlab [default: buildkite]",
  },
  format: {
    kind: "string",
    arg: "FORMAT",
    help:
      "token (only the token), json (the response fields) or kubernetes (an ExecCredential) [default: token]",
  },
  debug: {
    kind: "boolean",
    env: "DEBUG",
    help: "explain each step on stderr (never a secret)",
  },
  help: { kind: "switch", help: "show this help" },
  version: { kind: "switch", help: "show the version" },
};

const SHORT_FLAGS: Readonly<Record<string, string>> = { h: "help", V: "version" };

/** The plugin option a BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* suffix holds, as pipeline.yml spells it. */
export function optionName(suffix: string): string {
  return suffix.toLowerCase().replaceAll("_", "-");
}

/** The flags whose variable is not the flag's name in upper snake case. */
function variableExceptions(): string {
  return Object.entries(FLAGS)
    .filter(([name, spec]) => spec.env !== undefined && optionName(spec.env) !== name)
    .map(([name, spec]) => `--${name} reads ..._${spec.env}`)
    .join(", ");
}

/** The usage text for `--help`. */
export function helpText(version: string): string {
  const rows = Object.entries(FLAGS).map(([name, spec]) => {
    const short = Object.keys(SHORT_FLAGS).find((key) => SHORT_FLAGS[key] === name);
    const flag = `${short ? `-${short}, ` : "    "}--${name}${spec.arg ? ` ${spec.arg}` : ""}`;
    return `  ${flag.padEnd(34)} ${spec.help}${spec.env ? "" : " *"}`;
  });
  return `token-exchange ${version}
Exchange a CI job's OIDC token for a federated access token (OAuth 2.0 Token Exchange, RFC 8693).

Usage:
  deno run --no-prompt --allow-net=<endpoint host> --allow-env cli.ts \\
    --token-endpoint https://sts.example.com/token [options]
  (add --allow-run=buildkite-agent in a Buildkite job, for the default subject token source)

Options:
${rows.join("\n")}

Options not marked * fall back to ${ENV_PREFIX}<OPTION>, the plugin option
in upper snake case (${variableExceptions()};
--audience also reads ..._BUILDKITE_AUDIENCE; lists read ..._0, ..._1, …). A flag wins over its
variable.

Exit status: 0 success, 2 usage or configuration error, 1 any other failure.
`;
}

function levenshtein(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      current[j] = Math.min(
        previous[j]! + 1,
        current[j - 1]! + 1,
        previous[j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
    previous = current;
  }
  return previous[b.length]!;
}

/**
 * The candidate a mistyped name most likely meant: the closest by edit distance, if at most 3
 * edits away. The one rule behind every "did you mean" (flags and plugin options).
 *
 * @param name The name as given.
 * @param candidates The names that exist.
 * @returns The closest candidate, or `undefined` when none is close.
 */
export function closestName(name: string, candidates: readonly string[]): string | undefined {
  const closest = candidates
    .map((candidate) => ({ candidate, distance: levenshtein(name, candidate) }))
    .sort((a, b) => a.distance - b.distance)[0];
  return closest && closest.distance <= 3 ? closest.candidate : undefined;
}

function unknownFlag(flag: string): UsageError {
  const name = flag.replace(/^-+/, "").split("=")[0]!;
  if (/^client[-_]?secret$/i.test(name)) {
    return new UsageError(
      `There is no flag "--${name}": it would take the client secret itself, which the process list and the shell's history show to others: rotate that secret if it was used, keep the new one in an environment variable, and name the variable with --client-secret-env`,
    );
  }
  const closest = closestName(name, Object.keys(FLAGS));
  const hint = closest ? `: did you mean --${closest}?` : "";
  return new UsageError(`Unknown flag "${flag.split("=")[0]}"${hint || ": see --help"}`);
}

/** One argument as a flag: its name and the value written after `=`, if any. */
function splitFlag(arg: string, args: readonly string[], i: number): [string, string | undefined] {
  if (arg.startsWith("--") && arg.length > 2) {
    const eq = arg.indexOf("=");
    return eq === -1 ? [arg.slice(2), undefined] : [arg.slice(2, eq), arg.slice(eq + 1)];
  }
  if (/^-[A-Za-z]$/.test(arg) && SHORT_FLAGS[arg[1]!]) return [SHORT_FLAGS[arg[1]!]!, undefined];
  if (arg === "--") throw new UsageError(`Unexpected argument "${args[i + 1]}": see --help`);
  if (arg.startsWith("-") && arg !== "-") throw unknownFlag(arg);
  throw new UsageError(
    `Unexpected argument "${arg}": options are flags such as --token-endpoint URL`,
  );
}

/**
 * Parses argv into the values of each flag given; a list flag collects every occurrence.
 *
 * @throws {UsageError} For an unknown flag, a stray argument, a missing value, a value given to
 * `--help` or `--version`, or a single flag given twice.
 */
export function parseFlags(args: readonly string[]): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--" && i + 1 === args.length) break;
    const [name, inline] = splitFlag(arg, args, i);
    const spec = FLAGS[name];
    if (spec === undefined) throw unknownFlag(arg);
    let value: string;
    if (spec.kind === "switch") {
      if (inline !== undefined) {
        throw new UsageError(`Flag --${name} takes no value: write --${name} alone`);
      }
      value = "true";
    } else if (spec.kind === "boolean" || inline !== undefined) {
      value = inline ?? "true";
    } else {
      const next = args[i + 1];
      if (next === undefined || (next.startsWith("--") && next.length > 2)) {
        throw new UsageError(`Flag --${name} needs a value: --${name} ${spec.arg ?? "VALUE"}`);
      }
      value = next;
      i++;
    }
    const existing = values.get(name);
    if (existing !== undefined && spec.kind !== "list") {
      throw new UsageError(`Flag --${name} is given more than once: give it once`);
    }
    values.set(name, [...(existing ?? []), value]);
  }
  return values;
}

/** Reads one environment variable (such as `Deno.env.get`), so that only those used are read. */
export type Env = (name: string) => string | undefined;

/**
 * A value and where it came from, for messages: `--flag`, or the option as `pipeline.yml` spells
 * it (`client-secret-env`) for a BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variable.
 */
export interface Sourced<T> {
  value: T;
  from: string;
}

/**
 * How a run names its options in messages: each option that was set as it was set (a flag, or a
 * variable named as `pipeline.yml` spells its option), and the others as flags, or as plugin
 * options when the run is the plugin's (the hooks', or the endpoint from a variable).
 */
export interface OptionNames {
  /** The options that came from a BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variable, by flag name. */
  fromVariable: readonly string[];
  /** The options that came from a flag. */
  fromFlag: readonly string[];
  /** Name the options that were not set as the plugin's, not as flags. */
  plugin: boolean;
}

/**
 * An option's name for a message, as the user set it (see {@linkcode OptionNames}).
 *
 * @param names How the run names its options.
 * @param flag The flag's name, without `--`.
 * @returns `--flag`, or the plugin option (`client-id`, `claims`).
 */
export function optionLabel(names: OptionNames, flag: string): string {
  const env = FLAGS[flag]?.env;
  if (env === undefined || names.fromFlag.includes(flag)) return `--${flag}`;
  if (names.fromVariable.includes(flag) || names.plugin) return optionName(env);
  return `--${flag}`;
}

/** The options of one run: each read from its flag, or else its variable, remembering which. */
export class OptionValues {
  readonly #flags: Map<string, string[]>;
  readonly #env: Env;
  readonly #fromVariable = new Set<string>();
  readonly #fromFlag = new Set<string>();

  /**
   * @param flags The parsed flags.
   * @param env Reads a variable.
   */
  constructor(flags: Map<string, string[]>, env: Env) {
    this.#flags = flags;
    this.#env = env;
  }

  /** Whether the flag itself was given. */
  given(name: string): boolean {
    return this.#flags.has(name);
  }

  /** A plugin variable's value, or `undefined` when unset or empty. */
  variable(suffix: string): string | undefined {
    const value = this.#env(ENV_PREFIX + suffix);
    return value === undefined || value === "" ? undefined : value;
  }

  /** Reads any environment variable, such as the one `--client-secret-env` names. */
  env(name: string): string | undefined {
    return this.#env(name);
  }

  /** A single value: the flag's, or its variable's. */
  string(name: string): Sourced<string> | undefined {
    const flag = this.#flags.get(name);
    if (flag !== undefined) {
      this.#fromFlag.add(name);
      return { value: flag[0]!, from: `--${name}` };
    }
    const suffix = FLAGS[name]?.env;
    const value = suffix === undefined ? undefined : this.variable(suffix);
    if (value === undefined) return undefined;
    this.#fromVariable.add(name);
    return { value, from: optionName(suffix!) };
  }

  /** Every value: the flag's occurrences, or its variable (`_0`, `_1`, … or a plain string). */
  list(name: string): Sourced<string[]> {
    const flag = this.#flags.get(name);
    if (flag !== undefined) {
      this.#fromFlag.add(name);
      return { value: flag, from: `--${name}` };
    }
    const suffix = FLAGS[name]!.env!;
    const items = this.variables(suffix);
    if (items.length > 0) this.#fromVariable.add(name);
    return { value: items, from: optionName(suffix) };
  }

  /** A plugin list variable's values (`_0`, `_1`, … or a plain string). */
  variables(suffix: string): string[] {
    const items: string[] = [];
    if (this.variable(`${suffix}_0`) !== undefined) {
      for (let i = 0, item; (item = this.variable(`${suffix}_${i}`)) !== undefined; i++) {
        items.push(item);
      }
    } else {
      const single = this.variable(suffix);
      if (single !== undefined) items.push(single);
    }
    return items;
  }

  /** `true`/`1` or `false`/`0`; `false` when unset. */
  boolean(name: string): boolean {
    const source = this.string(name);
    if (source === undefined) return false;
    if (source.value === "true" || source.value === "1") return true;
    if (source.value === "false" || source.value === "0") return false;
    throw new UsageError(`${source.from} is "${source.value}": use true or false`);
  }

  /** One of `allowed`. */
  oneOf<T extends string>(name: string, allowed: readonly T[], fallback: T): T {
    const source = this.string(name);
    if (source === undefined) return fallback;
    if (!allowed.includes(source.value as T)) {
      const choices = `${allowed.slice(0, -1).join(", ")} or ${allowed.at(-1)}`;
      throw new UsageError(`${source.from} is "${source.value}": use ${choices}`);
    }
    return source.value as T;
  }

  /**
   * The name of an environment variable. Never quotes a bad value: a mistaken one is often the
   * secret (or token) itself.
   */
  envName(name: string, what: string, example: string): Sourced<string> | undefined {
    const source = this.string(name);
    if (source !== undefined && !/^[A-Za-z_][A-Za-z0-9_]*$/.test(source.value)) {
      throw new UsageError(
        `${source.from} is not an environment variable name (letters, digits and _): set it to the name of the variable that holds ${what}, such as ${example}, not to ${what} itself`,
      );
    }
    return source;
  }

  /** How this run names its options, from what has been read so far. */
  names(plugin: boolean): OptionNames {
    return { fromVariable: [...this.#fromVariable], fromFlag: [...this.#fromFlag], plugin };
  }
}
