// The plugin's options: every option plugin.yml declares, read from its
// BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variable and checked here, in one place, before anything that
// carries a credential is sent. Every message names the option as pipeline.yml spells it. The
// hooks only start the engine; what the options mean, and which of them fit together, is this
// module's.

import { type CliConfig, readConfig, readRetries, readTimeout } from "./_cli_config.ts";
import type { SessionOptions } from "./_cli_exchange.ts";
import {
  closestName,
  type Env,
  ENV_PREFIX,
  optionName,
  OptionValues,
  UsageError,
} from "./_cli_flags.ts";
import {
  AWS_AUDIENCE,
  type AwsOptions,
  AZURE_AUDIENCE,
  type AzureOptions,
  type GitHubOptions,
  type GoogleOptions,
  type KubernetesOptions,
  OCTO_STS_AUDIENCE,
  readAws,
  readAzure,
  readGitHub,
  readGoogle,
  readKubernetes,
  readSessionTags,
  readVault,
  type VaultOptions,
} from "./_plugin_providers.ts";
import { parseSingleHostUrl } from "./_url.ts";
import { type PluginContext, resolvePath, shown } from "./_plugin_values.ts";
import { type BuildkiteSource, chooseSubjectTokenSource } from "./_subject_token.ts";

export type { PluginContext } from "./_plugin_values.ts";

/** What an entry of the plugin does with the job's OIDC token. */
export type Mode =
  /** An RFC 8693 exchange; the issued token is exported (`token-endpoint` or `issuer`). */
  | "exchange"
  /** The OIDC token is handed to the AWS tools (`aws-role-arn`). */
  | "aws"
  /** The OIDC token is handed to Google's tools (`google-credentials`). */
  | "google"
  /** The OIDC token is handed to Azure's tools (`azure-client-id`, `azure-tenant-id`). */
  | "azure"
  /** A Vault login; the Vault token is exported (`vault-addr`). */
  | "vault"
  /** A GitHub token from octo-sts is exported (`github-token-scope`). */
  | "github";

const ALL: readonly Mode[] = ["exchange", "aws", "google", "azure", "vault", "github"];
/** The modes that export a token they obtained, with env-var, token-file and revoke. */
export const ISSUING: readonly Mode[] = ["exchange", "vault", "github"];

interface OptionSpec {
  /** A list (`NAME_0`, `NAME_1`, …, or one plain value). */
  list?: true;
  /** The modes in which it means something. */
  modes: readonly Mode[];
}

/**
 * Every option plugin.yml declares (a test keeps the two in step): whether it takes a list, and in
 * which modes it means something.
 */
export const PLUGIN_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  "token-endpoint": { modes: ["exchange", "google"] },
  issuer: { modes: ["exchange"] },
  audience: { modes: ALL },
  "buildkite-audience": { modes: ALL },
  lifetime: { modes: ALL },
  claims: { list: true, modes: ALL },
  "subject-token-type": { modes: ["exchange", "google"] },
  "target-audience": { list: true, modes: ["exchange", "google"] },
  resource: { list: true, modes: ["exchange"] },
  scope: { list: true, modes: ["exchange"] },
  "requested-token-type": { modes: ["exchange"] },
  "extra-params": { list: true, modes: ["exchange"] },
  "client-id": { modes: ["exchange"] },
  "client-secret-env": { modes: ["exchange"] },
  "client-auth": { modes: ["exchange"] },
  "grant-type": { modes: ["exchange"] },
  "env-var": { modes: ISSUING },
  "token-file": { modes: ISSUING },
  timeout: { modes: ALL },
  retries: { modes: ALL },
  "ca-file": { modes: ALL },
  hook: { modes: ALL },
  redact: { modes: ALL },
  debug: { modes: ALL },
  refresh: { modes: ALL },
  "oidc-token-file": { modes: ALL },
  // These two choose the mode.
  "google-credentials": { modes: ALL },
  "service-account": { modes: ["google"] },
  "service-account-token-lifetime": { modes: ["google"] },
  "aws-role-arn": { modes: ALL },
  "aws-session-name": { modes: ["aws"] },
  "aws-session-duration": { modes: ["aws"] },
  "aws-region": { modes: ["aws"] },
  "aws-session-tags": { list: true, modes: ["aws"] },
  "aws-credentials": { modes: ["aws"] },
  "kubernetes-server": { modes: ["exchange"] },
  "kubernetes-ca": { modes: ["exchange"] },
  // These choose the mode too.
  "azure-client-id": { modes: ALL },
  "azure-tenant-id": { modes: ALL },
  "azure-authority-host": { modes: ["azure"] },
  "vault-addr": { modes: ALL },
  "vault-role": { modes: ["vault"] },
  "vault-mount": { modes: ["vault"] },
  "vault-namespace": { modes: ["vault"] },
  "github-token-scope": { modes: ALL },
  "github-token-identity": { modes: ["github"] },
  "octo-sts-url": { modes: ["github"] },
  "github-api-url": { modes: ["github"] },
  revoke: { modes: ISSUING },
  "revocation-endpoint": { modes: ["exchange"] },
};

/** The options that choose a mode other than an exchange. */
const MODE_CHOOSERS: readonly (readonly [string, Mode])[] = [
  ["aws-role-arn", "aws"],
  ["google-credentials", "google"],
  ["azure-client-id", "azure"],
  ["azure-tenant-id", "azure"],
  ["vault-addr", "vault"],
  ["github-token-scope", "github"],
];

/** Options that mean something only beside another one: each names the one it needs. */
const NEEDS: Readonly<Record<string, string>> = {
  "service-account-token-lifetime": "service-account",
  "client-auth": "client-secret-env",
  "kubernetes-ca": "kubernetes-server",
};

/** The option that chooses each mode, for the messages about an option of that mode. */
export const MODE_OPTIONS: Readonly<Record<Mode, string>> = {
  exchange: "token-endpoint",
  aws: "aws-role-arn",
  google: "google-credentials",
  azure: "azure-client-id",
  vault: "vault-addr",
  github: "github-token-scope",
};

/** Why an option has no use in a mode, for the message. */
const MODE_REASONS: Readonly<Record<Mode, string>> = {
  exchange: "",
  aws:
    "with aws-role-arn, which makes no exchange (the AWS tools assume the role with the OIDC token themselves)",
  google:
    "with google-credentials, which makes no exchange (Google's tools exchange the OIDC token themselves)",
  azure:
    "with azure-client-id, which makes no exchange (Azure's tools exchange the OIDC token themselves)",
  vault: "with vault-addr, which logs in to Vault instead of making an exchange",
  github: "with github-token-scope, which asks octo-sts instead of making an exchange",
};

/** The variable each issuing mode exports its token as, unless env-var names another. */
const DEFAULT_ENV_VARS: Readonly<Partial<Record<Mode, string>>> = {
  exchange: "FEDERATED_ACCESS_TOKEN",
  vault: "VAULT_TOKEN",
  github: "GITHUB_TOKEN",
};

/** The OIDC token's audience in each mode whose provider expects one by default. */
const DEFAULT_AUDIENCES: Readonly<Partial<Record<Mode, string>>> = {
  aws: AWS_AUDIENCE,
  azure: AZURE_AUDIENCE,
  github: OCTO_STS_AUDIENCE,
};

/** Where `token-file` writes the issued token. */
export type TokenFile =
  /** `true`: in the entry's private directory. */
  | { kind: "private" }
  /** A path, absolute once `~/` and a relative path are resolved; `given` is as written. */
  | { kind: "path"; path: string; given: string };

/** One entry of the plugin in a step, as its options describe it. */
export interface PluginConfig {
  mode: Mode;
  hook: "environment" | "pre-command";
  debug: boolean;
  redact: boolean;
  refresh: boolean;
  /** What the agent is asked for: `buildkite-agent oidc request-token` with these options. */
  source: BuildkiteSource;
  /** The exchange's configuration (mode `exchange`). */
  exchange: CliConfig | undefined;
  /** The variable the issued token is exported as (mode `exchange`). */
  envVar: string;
  tokenFile: TokenFile | undefined;
  /** The variable that names the OIDC token's file (`oidc-token-file`), if any. */
  oidcTokenVar: string | undefined;
  /** Whether a file keeps the OIDC token (`oidc-token-file`, `aws-role-arn`, `google-credentials`). */
  keepsOidcToken: boolean;
  /** How every request is sent: `timeout`, `retries` and `ca-file` (its path resolved). */
  http: SessionOptions;
  aws: AwsOptions | undefined;
  google: GoogleOptions | undefined;
  azure: AzureOptions | undefined;
  vault: VaultOptions | undefined;
  github: GitHubOptions | undefined;
  /** A kubeconfig of the entry's own (`kubernetes-server`), with an exchange. */
  kubernetes: KubernetesOptions | undefined;
  /** Whether pre-exit revokes the issued token (`revoke`), and where, for an exchange. */
  revoke: { revocationEndpoint: URL | undefined } | undefined;
}

/**
 * Reads and checks every option of one plugin entry.
 *
 * @param variables The names of the BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables that are set.
 * @param context The environment and the working directory.
 * @returns The entry's configuration.
 * @throws {UsageError} Naming the option, for any mistake.
 */
export function readPluginConfig(
  variables: readonly string[],
  context: PluginContext,
): PluginConfig {
  const options = new OptionValues(new Map(), context.env);
  const value = (option: string) => options.variable(suffixOf(option));
  const given = checkOptionNames(variables, context.env).filter((option) =>
    // A file turned off is not asked for (token-file: false, oidc-token-file: false).
    !(option.endsWith("-file") && OFF_VALUES.includes(value(option)!))
  );
  const debug = readBoolean(options, "debug", false);
  const redact = readBoolean(options, "redact", true);
  const refresh = readBoolean(options, "refresh", false);
  const hook = value("hook") ?? "environment";
  if (hook !== "environment" && hook !== "pre-command") {
    throw new UsageError(`hook is "${shown(hook)}": use environment or pre-command`);
  }
  const mode = chooseMode(given, options);
  for (const option of given) checkUse(option, mode, given, value(option));
  const audience = value("audience") ?? value("buildkite-audience");
  const defaultAudience = DEFAULT_AUDIENCES[mode];
  const source: BuildkiteSource = {
    ...buildkiteSource(options),
    ...(audience === undefined && defaultAudience !== undefined && { audience: defaultAudience }),
    ...(mode === "aws" && { awsSessionTags: readSessionTags(options) }),
    stdin: true,
  };
  const oidcTokenVar = readOidcTokenVar(value("oidc-token-file"));
  const defaultEnvVar = DEFAULT_ENV_VARS[mode] ?? DEFAULT_ENV_VAR;
  const envVar = value("env-var") ?? defaultEnvVar;
  checkExportName(envVar, "env-var", defaultEnvVar);
  let tokenFile = readTokenFile(value("token-file"), context);
  const kubernetes = readKubernetes(options, context);
  // What refresh keeps fresh, and what a kubeconfig reads, is a file: the issued token's.
  if ((refresh || kubernetes) && ISSUING.includes(mode) && tokenFile === undefined) {
    tokenFile = { kind: "private" };
  }
  const caFile = value("ca-file");
  const http: SessionOptions = {
    timeout: readTimeout(options),
    retries: readRetries(options),
    caFile: caFile === undefined
      ? undefined
      : resolvePath(caFile, "ca-file", "~/ca/internal-ca.pem", context),
    caFileLabel: "ca-file",
  };
  const exchange = mode === "exchange" ? readExchange(options) : undefined;
  const aws = mode === "aws" ? readAws(options, context.env, refresh) : undefined;
  const azure = mode === "azure" ? readAzure(options) : undefined;
  return {
    mode,
    hook,
    debug,
    redact,
    refresh,
    source,
    exchange: exchange && { ...exchange, caFile: http.caFile },
    envVar,
    tokenFile,
    oidcTokenVar,
    // The AWS, Google and Azure tools read the OIDC token from its file (unless the hook hands
    // over AWS keys).
    keepsOidcToken: mode === "google" || mode === "azure" || aws?.credentials === "web-identity" ||
      oidcTokenVar !== undefined,
    http,
    aws,
    google: mode === "google" ? readGoogle(options, audience, context.env) : undefined,
    azure,
    vault: mode === "vault" ? readVault(options) : undefined,
    github: mode === "github" ? readGitHub(options, audience !== undefined) : undefined,
    kubernetes,
    revoke: readRevoke(options, mode, exchange),
  };
}

/** The entry's mode: an exchange, unless one (and only one) mode's option is set. */
function chooseMode(given: readonly string[], options: OptionValues): Mode {
  const chosen = MODE_CHOOSERS.filter(([option]) =>
    given.includes(option) &&
    (option !== "google-credentials" || readBoolean(options, "google-credentials", false))
  );
  const modes = [...new Set(chosen.map(([, mode]) => mode))];
  if (modes.length > 1) {
    const [first, second] = chosen.filter(([, mode], i) =>
      chosen.findIndex(([, other]) => other === mode) === i
    );
    throw new UsageError(
      `Both ${first![0]} and ${second![0]} are set: use one plugin entry for each`,
    );
  }
  return modes[0] ?? "exchange";
}

/**
 * `revoke` (on by default for Vault and GitHub tokens) and `revocation-endpoint`: what pre-exit
 * revokes, or undefined when it revokes nothing.
 */
function readRevoke(
  options: OptionValues,
  mode: Mode,
  exchange: CliConfig | undefined,
): PluginConfig["revoke"] {
  const revoke = readBoolean(options, "revoke", mode === "vault" || mode === "github");
  const endpoint = options.variable("REVOCATION_ENDPOINT");
  if (!revoke) {
    if (endpoint !== undefined) {
      throw new UsageError(
        "revocation-endpoint has no use with revoke: false: set revoke: true, or remove revocation-endpoint",
      );
    }
    return undefined;
  }
  if (exchange === undefined) return { revocationEndpoint: undefined };
  if (exchange.clientAuth === "assertion") {
    throw new UsageError(
      "revoke cannot authenticate with client-auth: assertion at the end of the job, when the OIDC token may have expired: use client-secret-env, or remove revoke",
    );
  }
  if (endpoint === undefined && exchange.issuer === undefined) {
    throw new UsageError(
      "revoke needs revocation-endpoint (RFC 7009), or issuer, whose metadata names it: set revocation-endpoint",
    );
  }
  try {
    return {
      revocationEndpoint: endpoint === undefined ? undefined : parseSingleHostUrl(
        endpoint,
        "Revocation endpoint (revocation-endpoint)",
        "client-id and client-secret-env",
      ),
    };
  } catch (error) {
    throw new UsageError((error as TypeError).message);
  }
}

const OFF_VALUES = ["false", "0"];

/** The BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* suffix of an option. */
function suffixOf(option: string): string {
  return option.toUpperCase().replaceAll("-", "_");
}

/**
 * Checks that each variable names an option (the agent does not validate plugin options by
 * default, and a misspelt one would be ignored), that only list options are given as lists, and
 * that no value has a line break or other control character (a YAML block scalar's newline).
 *
 * @returns The options given, by their pipeline.yml names.
 */
function checkOptionNames(variables: readonly string[], env: Env): string[] {
  const given = new Set<string>();
  for (const variable of variables) {
    if (!variable.startsWith(ENV_PREFIX)) continue;
    const suffix = variable.slice(ENV_PREFIX.length);
    const item = /^(.+)_\d+$/.exec(suffix);
    const option = PLUGIN_OPTIONS[optionName(suffix)] !== undefined || item === null
      ? optionName(suffix)
      : optionName(item[1]!);
    const spec = PLUGIN_OPTIONS[option];
    if (option === "client-secret") {
      throw new UsageError(
        "client-secret is not an option of this plugin: a secret written in pipeline.yml is kept in the repository and shown with the build's steps, so rotate it, keep the new one in a variable of the job's environment (an agent hook or Buildkite secrets), and name that variable with client-secret-env",
      );
    }
    if (spec === undefined) {
      const closest = closestName(option, Object.keys(PLUGIN_OPTIONS));
      throw new UsageError(
        `${option} is not an option of this plugin: ${
          closest ? `did you mean ${closest}?` : "see the plugin's README for the options"
        }`,
      );
    }
    if (item !== null && option !== optionName(suffix) && !spec.list) {
      throw new UsageError(`${option} takes one value, not a list: give it one value`);
    }
    // deno-lint-ignore no-control-regex
    if (/[\x00-\x1f\x7f-\x9f]/.test(env(variable) ?? "")) {
      throw new UsageError(
        `${option} is "${
          shown(env(variable)!)
        }", which has a line break or another control character in it: remove it`,
      );
    }
    given.add(option);
  }
  return [...given];
}

/** An option set in a mode where it has no use, or without the option it needs, is a mistake. */
function checkUse(
  option: string,
  mode: Mode,
  given: readonly string[],
  value: string | undefined,
): void {
  const spec = PLUGIN_OPTIONS[option]!;
  const only = spec.modes.length === 1 ? spec.modes[0]! : undefined;
  if (only !== undefined && only !== "exchange" && only !== mode) {
    const chooser = MODE_OPTIONS[only];
    throw new UsageError(
      `${option} has no use without ${chooser}: set ${chooser}${
        only === "google" ? ": true" : ""
      }, or remove ${option}`,
    );
  }
  if (!spec.modes.includes(mode)) {
    throw new UsageError(`${option} has no use ${MODE_REASONS[mode]}: remove ${option}`);
  }
  // A client assertion is the OIDC token itself: it needs a client ID, not a secret.
  const needed = option === "client-auth" && value === "assertion" ? "client-id" : NEEDS[option];
  if (needed !== undefined && !given.includes(needed)) {
    throw new UsageError(
      `${option} has no use without ${needed}: set ${needed}, or remove ${option}`,
    );
  }
}

function readBoolean(options: OptionValues, option: string, fallback: boolean): boolean {
  const text = options.variable(suffixOf(option));
  if (text === undefined) return fallback;
  if (text === "true" || text === "1") return true;
  if (text === "false" || text === "0") return false;
  throw new UsageError(`${option} is "${shown(text)}": use true or false`);
}

/** The audience, lifetime and claims of the Buildkite OIDC token. */
function buildkiteSource(options: OptionValues): BuildkiteSource {
  const source = chooseSubjectTokenSource(options);
  if (source.kind !== "buildkite") throw new Error("The plugin's subject token is Buildkite's");
  return source;
}

function readExchange(options: OptionValues): CliConfig {
  const config = readConfig(options, true);
  return { ...config, source: { ...config.source, stdin: true } as BuildkiteSource };
}

/** The variable the plugin exports by default. */
export const DEFAULT_ENV_VAR = "FEDERATED_ACCESS_TOKEN";

function readOidcTokenVar(text: string | undefined): string | undefined {
  if (text === undefined || text === "false" || text === "0") return undefined;
  if (text === "true" || text === "1") return "BUILDKITE_OIDC_TOKEN_FILE";
  checkExportName(text, "oidc-token-file", "BUILDKITE_OIDC_TOKEN_FILE");
  return text;
}

/**
 * Checks that a variable the plugin would export may be exported without breaking or hijacking the
 * rest of the job (the shell, the dynamic linker, the agent, git, proxies, language runtimes).
 *
 * @param name The variable's name.
 * @param option The option that names it.
 * @param example A name to suggest instead.
 * @throws {UsageError} Naming the option and why.
 */
export function checkExportName(name: string, option: string, example: string): void {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
    throw new UsageError(
      `${option} is "${
        shown(name)
      }", not an environment variable name: use a name such as ${example}`,
    );
  }
  if (name === example) return;
  const why = reservedBecause(name);
  if (why !== undefined) {
    throw new UsageError(
      `${option} is "${name}", a variable ${why}: use a name of your own such as ${example}`,
    );
  }
}

/**
 * Names a variable the plugin exports may not have, each with why: names that common tools read as
 * code, paths or configuration, so that an export could change what the job's tools do. Reviewed
 * patterns rather than a short list; docs/security.md lists them.
 */
export const RESERVED_NAMES: readonly (readonly [RegExp, string])[] = [
  [
    /^(?:PATH|HOME|SHELL|IFS|PS[1-4]|ENV|CDPATH|GLOBIGNORE|SHELLOPTS|PROMPT_COMMAND|TMPDIR|TMP|TEMP|USER|LOGNAME|PWD|OLDPWD|TERM|TERMINFO|LANG|LANGUAGE|TZ|TZDIR|HOSTNAME|MAIL|MAILPATH|OPTIND|OPTARG|OPTERR|HISTFILE|RANDOM|SECONDS|LINENO|UID|EUID|PPID|GROUPS|POSIXLY_CORRECT|EDITOR|VISUAL|PAGER|MANPAGER|BROWSER|SSLKEYLOGFILE|BUILDKITE|_)$/,
    "the shell and the rest of the job rely on",
  ],
  [/^(?:HTTPS?|ALL|NO|FTP)_PROXY$/i, "HTTP clients read as their proxy"],
  [
    /^(?:SSL_CERT_FILE|SSL_CERT_DIR|[A-Z_]*_CA_BUNDLE|[A-Z_]*_CA_CERTS?)$/,
    "TLS clients read as the certificates they trust",
  ],
  [
    /^(?:LD_|DYLD_|MALLOC_)|^(?:GCONV_PATH|GLIBC_TUNABLES|LOCPATH|HOSTALIASES|RES_OPTIONS|LOCALDOMAIN)$/,
    "the dynamic linker and the C library read",
  ],
  [/^BUILDKITE_/, "the Buildkite agent owns"],
  [/^BASH(?:_|$)/, "bash reads"],
  [/^(?:GIT|SSH)_/, "git and ssh read"],
  [/^TOKEN_EXCHANGE_/, "this plugin reads"],
  [/(?:_OPTS|_OPTIONS|FLAGS)$/, "tools read as their command-line options"],
  [/PATH$/, "tools read as where to find programs, libraries or files"],
  [/_HOME$|^XDG_/, "tools read as where their files are"],
  [
    /^(?:PYTHON|NODE_|RUBY|PERL|JAVA|_JAVA_|JDK_|CARGO_|RUSTC|RUSTUP_|PIP_|NPM_CONFIG_|npm_config_|YARN_|BUNDLE_|GEM_|DENO_|LC_|LESS|CGO_)/,
    "a language's runtime or package manager reads as code or configuration",
  ],
  [
    /^(?:GO(?:FLAGS|PROXY|PATH|ROOT|BIN|CACHE|ENV|OS|ARCH|PRIVATE|NOPROXY|NOSUMDB|SUMDB|INSECURE|TOOLCHAIN|EXPERIMENT|DEBUG|MODCACHE|WORK|AMD64|ARM|386|TELEMETRY)|GCCGO)$/,
    "the Go toolchain reads as configuration",
  ],
  [
    /^(?:CC|CXX|CPP|LD|AR|AS|NM|RANLIB|STRIP|MAKE|MAKEFILES|CMAKE_[A-Z_]*)$/,
    "build tools run as a compiler or read as configuration",
  ],
  [
    /^(?:KUBECONFIG|GOOGLE_APPLICATION_CREDENTIALS|CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE|CLOUDSDK_CONFIG|AWS_CONFIG_FILE|AWS_SHARED_CREDENTIALS_FILE|AWS_WEB_IDENTITY_TOKEN_FILE|AWS_ROLE_ARN|AWS_ROLE_SESSION_NAME|AWS_PROFILE|DOCKER_HOST|DOCKER_CONFIG|DOCKER_CERT_PATH)$/,
    "a cloud or container tool reads as where its credentials or configuration are",
  ],
];

/**
 * Why a variable may not be exported, or `undefined` when it may. A name that ends in `_TOKEN`
 * stays allowed (`GITHUB_TOKEN`, `VAULT_TOKEN`, `NODE_AUTH_TOKEN`, `GOOGLE_OAUTH_ACCESS_TOKEN`):
 * exporting the token where a tool looks for it is the point; but never the agent's or this
 * plugin's own.
 */
export function reservedBecause(name: string): string | undefined {
  if (/_TOKEN$/.test(name) && !/^(?:BUILDKITE|TOKEN_EXCHANGE)_/.test(name)) return undefined;
  return RESERVED_NAMES.find(([pattern]) => pattern.test(name))?.[1];
}

/** `token-file`: `true`, or a path (`~/` is the home directory, a relative one the checkout's). */
function readTokenFile(text: string | undefined, context: PluginContext): TokenFile | undefined {
  if (text === undefined || text === "false" || text === "0") return undefined;
  if (text === "true" || text === "1") return { kind: "private" };
  const path = resolvePath(
    text,
    "token-file",
    "~/.config/sts/token",
    context,
    ", or token-file: true for a private one",
  );
  return { kind: "path", path, given: text };
}
