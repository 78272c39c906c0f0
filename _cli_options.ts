// Turns command-line flags and BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables into a checked
// configuration, or a usage error (exit status 2), before anything is run or sent.
//
// A small table-driven parser rather than node:util's parseArgs: importing node:util costs about
// 6 ms of start-up, a third of a whole exchange (see README, Performance).

import { TOKEN_TYPES } from "./_constants.ts";
import { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS, parseSecureUrl, parseUrl } from "./_http.ts";
import { oneLine } from "./_redact.ts";
import { buildRequest, type ClientAuthMethod } from "./_request.ts";

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

/** Where the subject token comes from. */
export type SubjectTokenSource =
  | {
    kind: "buildkite";
    audience: string;
    lifetime: number | undefined;
    claims: string[];
    /** The hooks ran the agent: its output is on stdin (see readAgentOutput). */
    stdin?: boolean;
  }
  | { kind: "github-actions"; audience: string | undefined }
  | { kind: "gitlab"; variable: string }
  | { kind: "env"; variable: string }
  | { kind: "file"; path: string };

/** Everything the CLI needs to do one exchange. */
export interface CliConfig {
  help: boolean;
  version: boolean;
  debug: boolean;
  /** `hook`: the plugin's hooks' format (token and expires_in lines on stdout, errors too). */
  format: "token" | "json" | "hook";
  tokenEndpoint: URL | undefined;
  issuer: URL | undefined;
  source: SubjectTokenSource;
  subjectTokenType: string;
  audience: string[];
  resource: string[];
  scope: string[];
  requestedTokenType: string | undefined;
  extraParameters: Record<string, string[]>;
  clientId: string | undefined;
  clientSecret: string | undefined;
  clientSecretEnv: string | undefined;
  clientAuth: ClientAuthMethod;
  /** Per-attempt timeout in milliseconds. */
  timeout: number;
  retries: number;
}

type Kind = "string" | "list" | "boolean";

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
    arg: "basic|post",
    help: "how the client secret is sent [default: basic]",
  },
  timeout: {
    kind: "string",
    env: "TIMEOUT",
    arg: "SECONDS",
    help: "time for each HTTP attempt, headers and body [default: 10]",
  },
  retries: {
    kind: "string",
    env: "RETRIES",
    arg: "N",
    help: `extra attempts on transient failure [default: ${DEFAULT_RETRIES}]`,
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
    arg: "token|json",
    help: "print only the token, or the response fields as JSON [default: token]",
  },
  debug: {
    kind: "boolean",
    env: "DEBUG",
    help: "explain each step on stderr (never a secret)",
  },
  help: { kind: "boolean", help: "show this help" },
  version: { kind: "boolean", help: "show the version" },
};

const SHORT_FLAGS: Readonly<Record<string, string>> = { h: "help", V: "version" };

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
  deno run --allow-net=<endpoint host> --allow-run=buildkite-agent --allow-env cli.ts \\
    --token-endpoint https://sts.example.com/token [options]

Options:
${rows.join("\n")}

Options not marked * fall back to ${ENV_PREFIX}<NAME> (the flag in upper snake
case; --claim reads ..._CLAIMS, --audience also ..._BUILDKITE_AUDIENCE; lists read ..._0, ..._1).
A flag wins over its variable.

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

function unknownFlag(flag: string): UsageError {
  const name = flag.replace(/^-+/, "").split("=")[0]!;
  const closest = Object.keys(FLAGS)
    .map((candidate) => ({ candidate, distance: levenshtein(name, candidate) }))
    .sort((a, b) => a.distance - b.distance)[0];
  const hint = closest && closest.distance <= 3 ? `: did you mean --${closest.candidate}?` : "";
  return new UsageError(`Unknown flag "${flag.split("=")[0]}"${hint || ": see --help"}`);
}

/** Parses argv into values per flag name; lists collect every occurrence. */
export function parseFlags(args: readonly string[]): Map<string, string[]> {
  const values = new Map<string, string[]>();
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    let name: string;
    let inline: string | undefined;
    if (arg.startsWith("--") && arg.length > 2) {
      const eq = arg.indexOf("=");
      name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      inline = eq === -1 ? undefined : arg.slice(eq + 1);
    } else if (/^-[A-Za-z]$/.test(arg) && SHORT_FLAGS[arg[1]!]) {
      name = SHORT_FLAGS[arg[1]!]!;
    } else if (arg === "--") {
      if (i + 1 < args.length) {
        throw new UsageError(`Unexpected argument "${args[i + 1]}": see --help`);
      }
      break;
    } else if (arg.startsWith("-") && arg !== "-") {
      throw unknownFlag(arg);
    } else {
      throw new UsageError(
        `Unexpected argument "${arg}": options are flags such as --token-endpoint URL`,
      );
    }
    const spec = FLAGS[name];
    if (spec === undefined) throw unknownFlag(arg);
    let value: string;
    if (spec.kind === "boolean") {
      value = inline ?? "true";
    } else if (inline !== undefined) {
      value = inline;
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

/** A plugin variable's value, or `undefined` when unset or empty. */
function envValue(env: Env, suffix: string): string | undefined {
  const value = env(ENV_PREFIX + suffix);
  return value === undefined || value === "" ? undefined : value;
}

/** A plugin array variable: `_0`, `_1`, … or a plain string. */
function envList(env: Env, suffix: string): string[] | undefined {
  if (envValue(env, `${suffix}_0`) !== undefined) {
    const items: string[] = [];
    for (let i = 0; envValue(env, `${suffix}_${i}`) !== undefined; i++) {
      items.push(envValue(env, `${suffix}_${i}`)!);
    }
    return items;
  }
  const single = envValue(env, suffix);
  return single === undefined ? undefined : [single];
}

/**
 * Where a value came from, for messages: `--flag`, or the option as `pipeline.yml` spells it
 * (`client-secret-env`) for a BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variable.
 */
interface Sourced<T> {
  value: T;
  from: string;
}

/** The plugin option a BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* suffix holds, as pipeline.yml spells it. */
export function optionName(suffix: string): string {
  return suffix.toLowerCase().replaceAll("_", "-");
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/**
 * A variable name in the usual form, which is safe to quote: upper case, and with an underscore
 * or short (an access key ID such as `AKIAIOSFODNN7EXAMPLE` is upper case too). The hooks apply the
 * same rule (lib/plugin.bash, token_exchange_quotable_name).
 */
const CONVENTIONAL_ENV_NAME = /^(?=[A-Z0-9_]*_|[A-Z0-9_]{1,12}$)[A-Z_][A-Z0-9_]{0,63}$/;

/** A variable name for a message: quoted if it looks like one, since a mistaken value may be a secret. */
function variable(name: string): string {
  return CONVENTIONAL_ENV_NAME.test(name) ? `"${name}"` : "(its name not shown)";
}

/** A host name as a DNS name: labels of letters, digits, hyphens (and underscores), 253 in all. */
const DNS_NAME =
  /^(?=.{1,253}\.?$)(?:[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.)*[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?\.?$/i;
/** An IPv4 address in four decimal parts. */
const IPV4 = /^(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)$/;

/**
 * Parses a URL that also reaches a Deno permission flag (the hook's `--allow-net=<host>`, which it
 * cuts from the text between `://` and the first `/`, `?` or `#`), and checks it says exactly one
 * host and port that the URL parser reads the same way: no whitespace or control character, no
 * user name or password, no comma, a DNS name or an IP literal, and a port from 1 to 65535.
 *
 * @throws {UsageError} Naming the option, for anything else.
 */
export function parsePermissionUrl(source: Sourced<string>, what: string): URL {
  const label = `${what} (${source.from})`;
  const raw = source.value;
  const shown = JSON.stringify(oneLine(raw)).slice(1, -1);
  // deno-lint-ignore no-control-regex
  if (/[\s\x00-\x1f\x7f-\x9f]/.test(raw)) {
    throw new UsageError(
      `${label} "${shown}" has a space, line break or control character in it: write the URL without them`,
    );
  }
  const scheme = /^[A-Za-z][A-Za-z0-9+.-]*:\/\//.exec(raw);
  if (scheme !== null) {
    const authority = raw.slice(scheme[0].length).split(/[/?#]/, 1)[0]!;
    if (authority.includes("@")) {
      throw new UsageError(
        `${label} must not contain a user name or password (user@host): use client-id and client-secret-env instead`,
      );
    }
    const match = /^(\[[^\]]*\]|[^:]*)(?::(.*))?$/.exec(authority);
    const host = match?.[1] ?? authority;
    const port = match?.[2];
    if (host.includes(",")) {
      throw new UsageError(
        `${label} "${shown}" has a comma in its host "${host}": a host is one DNS name or IP address`,
      );
    }
    if (
      match === null || host === "" ||
      (!host.startsWith("[") && !IPV4.test(host) && !DNS_NAME.test(host))
    ) {
      throw new UsageError(
        `${label} "${shown}" has an invalid host "${host}": use a DNS name (letters, digits and hyphens; xn-- for an international name) or an IP address`,
      );
    }
    if (
      port !== undefined && !(/^\d{1,5}$/.test(port) && Number(port) >= 1 && Number(port) <= 65535)
    ) {
      throw new UsageError(`${label} "${shown}" has port "${port}": use a port from 1 to 65535`);
    }
  }
  let url: URL;
  try {
    url = parseSecureUrl(raw, label);
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  if (scheme === null) {
    throw new UsageError(`${label} "${shown}" must start with "${url.protocol}//"`);
  }
  const host = raw.slice(scheme[0].length).split(/[/?#]/, 1)[0]!.replace(/:\d+$/, "");
  if (!host.startsWith("[") && host.toLowerCase() !== url.hostname) {
    throw new UsageError(
      `${label} "${shown}" has host "${host}", which means "${url.hostname}": write "${url.hostname}" instead`,
    );
  }
  return url;
}

/**
 * Reads and checks the whole configuration from flags and the environment.
 *
 * @throws {UsageError} For anything wrong with it.
 */
export function parseCliConfig(args: readonly string[], env: Env): CliConfig {
  const flags = parseFlags(args);
  const help = flags.has("help");
  const version = flags.has("version");
  if (help || version) {
    // Answered before any variable is read, so --help needs no permission at all.
    return {
      help,
      version,
      debug: false,
      format: "token",
      tokenEndpoint: undefined,
      issuer: undefined,
      source: { kind: "buildkite", audience: "buildkite", lifetime: undefined, claims: [] },
      subjectTokenType: TOKEN_TYPES.jwt,
      audience: [],
      resource: [],
      scope: [],
      requestedTokenType: undefined,
      extraParameters: {},
      clientId: undefined,
      clientSecret: undefined,
      clientSecretEnv: undefined,
      clientAuth: "basic",
      timeout: DEFAULT_TIMEOUT_MS,
      retries: DEFAULT_RETRIES,
    };
  }

  function string(name: string): Sourced<string> | undefined {
    const flag = flags.get(name);
    if (flag !== undefined) return { value: flag[0]!, from: `--${name}` };
    const suffix = FLAGS[name]?.env;
    const value = suffix === undefined ? undefined : envValue(env, suffix);
    return value === undefined ? undefined : { value, from: optionName(suffix!) };
  }
  function list(name: string): Sourced<string[]> {
    const flag = flags.get(name);
    if (flag !== undefined) return { value: flag, from: `--${name}` };
    const suffix = FLAGS[name]!.env!;
    return { value: envList(env, suffix) ?? [], from: optionName(suffix) };
  }
  function boolean(name: string): boolean {
    const source = string(name);
    if (source === undefined) return false;
    const value = source.value;
    if (value === "true" || value === "1") return true;
    if (value === "false" || value === "0") return false;
    throw new UsageError(`${source.from} is "${source.value}": use true or false`);
  }
  /** One of `allowed`, or of `internal` (values for the hooks, not offered in messages). */
  function oneOf<T extends string>(
    name: string,
    allowed: readonly T[],
    fallback: T,
    internal: readonly T[] = [],
  ): T {
    const source = string(name);
    if (source === undefined) return fallback;
    if (![...allowed, ...internal].includes(source.value as T)) {
      throw new UsageError(`${source.from} is "${source.value}": use ${allowed.join(" or ")}`);
    }
    return source.value as T;
  }
  function url(name: string, what: string): URL | undefined {
    const source = string(name);
    return source === undefined ? undefined : parsePermissionUrl(source, what);
  }
  // Never quotes the value: a mistaken one is often the secret (or token) itself.
  function envName(name: string, what: string, example: string): string | undefined {
    const source = string(name);
    if (source !== undefined && !ENV_NAME.test(source.value)) {
      throw new UsageError(
        `${source.from} is not an environment variable name (letters, digits and _): set it to the name of the variable that holds ${what}, such as ${example}, not to ${what} itself`,
      );
    }
    return source?.value;
  }

  const debug = boolean("debug");
  const format = oneOf("format", ["token", "json"] as const, "token", ["hook"] as const);
  const clientAuth = oneOf("client-auth", ["basic", "post"] as const, "basic");

  const tokenEndpoint = url("token-endpoint", "Token endpoint");
  const issuer = url("issuer", "Issuer");
  if (tokenEndpoint === undefined && issuer === undefined) {
    throw new UsageError(
      `No token endpoint: set --token-endpoint (or ${ENV_PREFIX}TOKEN_ENDPOINT), or --issuer to discover it`,
    );
  }
  if (tokenEndpoint !== undefined && issuer !== undefined) {
    throw new UsageError(
      `Both a token endpoint (${string("token-endpoint")!.from}) and an issuer (${
        string("issuer")!.from
      }) are set: set only one`,
    );
  }
  if (issuer !== undefined && issuer.search !== "") {
    throw new UsageError(`Issuer "${issuer.href}" must not have a query`);
  }

  const timeoutSource = string("timeout");
  let timeout = DEFAULT_TIMEOUT_MS;
  if (timeoutSource !== undefined) {
    const seconds = Number(timeoutSource.value);
    if (!/^\s*\d*\.?\d+\s*$/.test(timeoutSource.value) || !(seconds > 0) || seconds > 3600) {
      throw new UsageError(
        `${timeoutSource.from} is "${timeoutSource.value}": use a number of seconds above 0 (such as 10 or 2.5), at most 3600`,
      );
    }
    timeout = seconds * 1000;
  }
  const retriesSource = string("retries");
  let retries = DEFAULT_RETRIES;
  if (retriesSource !== undefined) {
    if (!/^\d{1,3}$/.test(retriesSource.value) || Number(retriesSource.value) > 100) {
      throw new UsageError(
        `${retriesSource.from} is "${retriesSource.value}": use a whole number from 0 to 100`,
      );
    }
    retries = Number(retriesSource.value);
  }

  // The CI system's own OIDC token: its source, audience, lifetime and claims.
  const audienceFlag = flags.get("audience")?.[0];
  const audienceEnv = envValue(env, "AUDIENCE");
  const buildkiteAudienceEnv = envValue(env, "BUILDKITE_AUDIENCE");
  if (
    audienceFlag === undefined && audienceEnv !== undefined &&
    buildkiteAudienceEnv !== undefined && audienceEnv !== buildkiteAudienceEnv
  ) {
    throw new UsageError(
      `audience is "${audienceEnv}" but buildkite-audience is "${buildkiteAudienceEnv}": set only one of them`,
    );
  }
  const audience = audienceFlag ?? audienceEnv ?? buildkiteAudienceEnv;
  const lifetimeSource = string("lifetime");
  let lifetime: number | undefined;
  if (lifetimeSource !== undefined) {
    if (!/^\d{1,9}$/.test(lifetimeSource.value) || Number(lifetimeSource.value) === 0) {
      throw new UsageError(
        `${lifetimeSource.from} is "${lifetimeSource.value}": use a whole number of seconds above 0`,
      );
    }
    lifetime = Number(lifetimeSource.value);
  }
  const claims = list("claim").value;

  const kind = oneOf(
    "subject-token-source",
    ["buildkite", "github-actions", "gitlab"] as const,
    "buildkite",
  );
  const sourceGiven = flags.has("subject-token-source");
  const tokenEnv = envName("subject-token-env", "the token", "MY_TOKEN");
  const tokenFile = flags.get("subject-token-file")?.[0];
  if (tokenEnv !== undefined && tokenFile !== undefined) {
    throw new UsageError("Both --subject-token-env and --subject-token-file are set: use one");
  }
  // `--subject-token-source buildkite --subject-token-file -`: what `buildkite-agent oidc
  // request-token` printed, on stdin (the hooks start the agent while Deno starts).
  const agentOnStdin = sourceGiven && kind === "buildkite" && tokenFile === "-";
  if (sourceGiven && kind !== "gitlab" && !agentOnStdin && (tokenEnv ?? tokenFile) !== undefined) {
    throw new UsageError(
      `--subject-token-source ${kind} gets its own token: drop --subject-token-${
        tokenEnv ? "env" : "file"
      }`,
    );
  }
  let source: SubjectTokenSource;
  if (kind === "gitlab") {
    if (tokenEnv === undefined) {
      throw new UsageError(
        "--subject-token-source gitlab needs --subject-token-env NAME, the variable your id_tokens: block defines",
      );
    }
    source = { kind: "gitlab", variable: tokenEnv };
  } else if (agentOnStdin) {
    source = {
      kind: "buildkite",
      audience: audience ?? "buildkite",
      lifetime,
      claims,
      stdin: true,
    };
  } else if (tokenEnv !== undefined) {
    source = { kind: "env", variable: tokenEnv };
  } else if (tokenFile !== undefined) {
    if (tokenFile === "") {
      throw new UsageError("--subject-token-file is empty: give a path, or - for stdin");
    }
    source = { kind: "file", path: tokenFile };
  } else if (kind === "github-actions") {
    source = { kind: "github-actions", audience };
  } else {
    source = { kind: "buildkite", audience: audience ?? "buildkite", lifetime, claims };
  }
  // Flags that only the Buildkite source can use are an error elsewhere, not silently dropped.
  const buildkiteOnly = [
    "lifetime",
    "claim",
    ...(source.kind === "github-actions" ? [] : ["audience"]),
  ];
  for (const name of buildkiteOnly) {
    if (source.kind !== "buildkite" && flags.has(name)) {
      throw new UsageError(
        `--${name} applies only to a token from buildkite-agent, not to --subject-token-${
          source.kind === "file" ? "file" : source.kind === "env" ? "env" : "source " + source.kind
        }`,
      );
    }
  }

  const clientId = string("client-id")?.value;
  const clientSecretEnv = envName("client-secret-env", "the secret", "STS_CLIENT_SECRET");
  let clientSecret: string | undefined;
  if (clientSecretEnv !== undefined) {
    clientSecret = env(clientSecretEnv);
    if (clientSecret === undefined || clientSecret === "") {
      throw new UsageError(
        `Client secret variable ${variable(clientSecretEnv)} (${
          string("client-secret-env")!.from
        }) is unset or empty: set it, for example from your secrets manager`,
      );
    }
    if (clientId === undefined) {
      throw new UsageError(
        `A client secret (${string("client-secret-env")!.from}) needs a client ID: set ${
          flags.has("client-secret-env") ? "--client-id" : "client-id"
        }`,
      );
    }
  }

  const resource = list("resource");
  for (const value of resource.value) {
    if (parseUrl(value)?.hash !== "") {
      throw new UsageError(
        `${resource.from} has "${value}", not an absolute URI without a fragment: use a URI such as "https://api.example.com"`,
      );
    }
  }

  const extra = list("extra-param");
  const extraParameters: Record<string, string[]> = {};
  for (const item of extra.value) {
    const eq = item.indexOf("=");
    if (eq < 1) {
      throw new UsageError(
        `${extra.from} has "${item}", not NAME=VALUE: use a parameter such as connector_id=buildkite`,
      );
    }
    (extraParameters[item.slice(0, eq)] ??= []).push(item.slice(eq + 1));
  }

  const config: CliConfig = {
    help: false,
    version: false,
    debug,
    format,
    tokenEndpoint,
    issuer,
    source,
    subjectTokenType: string("subject-token-type")?.value ?? TOKEN_TYPES.jwt,
    audience: list("target-audience").value,
    resource: resource.value,
    scope: list("scope").value,
    requestedTokenType: string("requested-token-type")?.value,
    extraParameters,
    clientId,
    clientSecret,
    clientSecretEnv,
    clientAuth,
    timeout,
    retries,
  };
  // Whatever else the library would refuse, refuse it now, before any token is requested.
  try {
    buildRequest({
      ...exchangeParameters(config),
      tokenEndpoint: config.tokenEndpoint ?? "https://issuer.invalid/token",
      subjectToken: "placeholder",
    });
  } catch (error) {
    throw new UsageError((error as Error).message);
  }
  return config;
}

/** The exchange parameters of a configuration, without the endpoint and subject token. */
export function exchangeParameters(config: CliConfig) {
  return {
    subjectTokenType: config.subjectTokenType,
    audience: config.audience,
    resource: config.resource,
    scope: config.scope,
    requestedTokenType: config.requestedTokenType,
    extraParameters: config.extraParameters,
    clientId: config.clientId,
    clientSecret: config.clientSecret,
    clientAuth: config.clientAuth,
  };
}
