// The CLI's configuration: each option read from its flag or its BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*
// variable and checked, or a usage error (exit status 2) naming the option as the user wrote it,
// before anything is run or sent. `--help` and `--version` are commands of their own.

import {
  type Env,
  optionLabel,
  type OptionNames,
  OptionValues,
  parseFlags,
  UsageError,
} from "./_cli_flags.ts";
import { TOKEN_TYPES } from "./_constants.ts";
import { DEFAULT_RETRIES, DEFAULT_TIMEOUT_MS } from "./_http.ts";
import { decodeJson } from "./_json.ts";
import { summarise } from "./_redact.ts";
import {
  checkParameters,
  type ClientAuthMethod,
  type ExchangeParameters,
  type GrantType,
  type ParameterLabel,
  type TokenExchangeParameters,
} from "./_request.ts";
import { chooseSubjectTokenSource, type SubjectTokenSource } from "./_subject_token.ts";
import { parseIssuerUrl, parseSecureUrl, parseSingleHostUrl } from "./_url.ts";

/** What the command prints on success. */
export type OutputFormat =
  /** Only the token. */
  | "token"
  /** The response fields as one JSON object. */
  | "json"
  /** A client.authentication.k8s.io ExecCredential, for kubectl's exec credential plugins. */
  | "kubernetes";

/** Everything the CLI needs to do one exchange. */
export interface CliConfig {
  debug: boolean;
  format: OutputFormat;
  /** For `--format kubernetes`: the ExecCredential apiVersion that KUBERNETES_EXEC_INFO asks for. */
  execCredentialApiVersion?: string;
  tokenEndpoint: URL | undefined;
  issuer: URL | undefined;
  source: SubjectTokenSource;
  subjectTokenType: string;
  /** RFC 8693 `audience` parameters (`--target-audience`), not the OIDC token's `aud`. */
  targetAudience: string[];
  resource: string[];
  scope: string[];
  requestedTokenType: string | undefined;
  extraParameters: Record<string, string[]>;
  clientId: string | undefined;
  clientSecret: string | undefined;
  clientSecretEnv: string | undefined;
  clientAuth: ClientAuthMethod;
  /** The grant: RFC 8693 token exchange (the default), RFC 7523's JWT bearer, client credentials. */
  grantType: GrantType;
  /** Per-attempt timeout in milliseconds. */
  timeout: number;
  retries: number;
  /** A PEM file of CA certificates to trust beside the system's (`--ca-file`), as given. */
  caFile: string | undefined;
  /** How messages name the options. */
  names: OptionNames;
}

/** What the command line asks for. */
export type CliCommand =
  | { kind: "help" }
  | { kind: "version" }
  | { kind: "run"; config: CliConfig };

/**
 * Reads the command line and the environment: `--help`, `--version`, or a checked configuration.
 * `--help` and `--version` are answered before any variable is read, so they need no permission.
 *
 * @param args The arguments, without the program name.
 * @param env Reads a variable: the plugin's, and the one `--client-secret-env` names.
 * @returns The command.
 * @throws {UsageError} For anything wrong with the flags, the variables or how they fit together.
 */
export function parseCommandLine(args: readonly string[], env: Env): CliCommand {
  const flags = parseFlags(args);
  if (flags.has("help")) return { kind: "help" };
  if (flags.has("version")) return { kind: "version" };
  return { kind: "run", config: readConfig(new OptionValues(flags, env)) };
}

/**
 * The configuration of a run, from its options: the command line's, or with `plugin` the plugin's
 * (its BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables alone, named in messages as `pipeline.yml` names
 * them).
 *
 * @param options The options.
 * @param plugin Whether this is the plugin's exchange.
 * @returns The checked configuration.
 * @throws {UsageError} For anything wrong with the options or how they fit together.
 */
export function readConfig(options: OptionValues, plugin = false): CliConfig {
  const debug = options.boolean("debug");
  const format = options.oneOf("format", ["token", "json", "kubernetes"] as const, "token");
  const clientAuth = options.oneOf(
    "client-auth",
    ["basic", "post", "assertion"] as const,
    "basic",
  );
  const grantType = options.oneOf(
    "grant-type",
    ["token-exchange", "jwt-bearer", "client-credentials"] as const,
    "token-exchange",
  );
  const { tokenEndpoint, issuer, plugin: named } = readEndpoint(options, plugin);
  const timeout = readTimeout(options);
  const retries = readRetries(options);
  const source = chooseSubjectTokenSource(options);
  const client = readClient(options);
  const extraParameters = readExtraParameters(options);
  const config: CliConfig = {
    debug,
    format,
    ...(format === "kubernetes" &&
      { execCredentialApiVersion: execCredentialApiVersion(options.env("KUBERNETES_EXEC_INFO")) }),
    tokenEndpoint,
    issuer,
    source,
    subjectTokenType: options.string("subject-token-type")?.value ?? TOKEN_TYPES.jwt,
    targetAudience: options.list("target-audience").value,
    resource: options.list("resource").value,
    scope: options.list("scope").value,
    requestedTokenType: options.string("requested-token-type")?.value,
    extraParameters,
    ...client,
    clientAuth,
    grantType,
    timeout,
    retries,
    caFile: options.string("ca-file")?.value,
    names: options.names(named),
  };
  const subjectTokenType = options.string("subject-token-type");
  if (grantType !== "token-exchange" && subjectTokenType !== undefined) {
    throw new UsageError(
      `${subjectTokenType.from} has no use with ${
        labelOf(config, "grant-type")
      } ${grantType}, which sends no subject_token: remove it`,
    );
  }
  // Whatever else the library would refuse, refuse it now, before any token is requested, with
  // the library's own check.
  try {
    checkParameters(exchangeParameters(config), parameterLabel(config));
  } catch (error) {
    throw new UsageError((error as TypeError).message);
  }
  return config;
}

/**
 * The token endpoint or the issuer (exactly one), each a URL that makes one clean `--allow-net`
 * host; and whether messages name the options as `pipeline.yml` does (the plugin's run, or the URL
 * from a variable).
 */
function readEndpoint(
  options: OptionValues,
  pluginRun: boolean,
): { tokenEndpoint: URL | undefined; issuer: URL | undefined; plugin: boolean } {
  const endpointSource = options.string("token-endpoint");
  const issuerSource = options.string("issuer");
  const given = endpointSource ?? issuerSource;
  const plugin = pluginRun || (given !== undefined && !given.from.startsWith("--"));
  const credentials = plugin
    ? "client-id and client-secret-env"
    : "--client-id and --client-secret-env";
  const url = (source: typeof given, what: string, parse: typeof parseSecureUrl) => {
    if (source === undefined) return undefined;
    try {
      return parseSingleHostUrl(source.value, `${what} (${source.from})`, credentials, parse);
    } catch (error) {
      throw new UsageError((error as TypeError).message);
    }
  };
  const tokenEndpoint = url(endpointSource, "Token endpoint", parseSecureUrl);
  const issuer = url(issuerSource, "Issuer", parseIssuerUrl);
  if (endpointSource === undefined && issuerSource === undefined) {
    throw new UsageError(
      plugin
        ? "No token endpoint: set token-endpoint, or issuer to discover it"
        : "No token endpoint: set --token-endpoint (or BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT), or --issuer to discover it",
    );
  }
  if (endpointSource !== undefined && issuerSource !== undefined) {
    throw new UsageError(
      `Both a token endpoint (${endpointSource.from}) and an issuer (${issuerSource.from}) are set: set only one`,
    );
  }
  return { tokenEndpoint, issuer, plugin };
}

/** `--timeout` (the plugin's `timeout`) in milliseconds. */
export function readTimeout(options: OptionValues): number {
  const source = options.string("timeout");
  if (source === undefined) return DEFAULT_TIMEOUT_MS;
  const seconds = Number(source.value);
  if (!/^\s*\d*\.?\d+\s*$/.test(source.value) || !(seconds > 0) || seconds > 3600) {
    throw new UsageError(
      `${source.from} is "${source.value}": use a number of seconds above 0 (such as 10 or 2.5), at most 3600`,
    );
  }
  return seconds * 1000;
}

/** `--retries` (the plugin's `retries`). */
export function readRetries(options: OptionValues): number {
  const source = options.string("retries");
  if (source === undefined) return DEFAULT_RETRIES;
  if (!/^\d{1,3}$/.test(source.value) || Number(source.value) > 100) {
    throw new UsageError(`${source.from} is "${source.value}": use a whole number from 0 to 100`);
  }
  return Number(source.value);
}

/** The ExecCredential versions `--format kubernetes` writes; kubectl 1.20 knows only v1beta1. */
export const EXEC_CREDENTIAL_VERSIONS: readonly string[] = [
  "client.authentication.k8s.io/v1",
  "client.authentication.k8s.io/v1beta1",
];

/**
 * The ExecCredential apiVersion to answer in, from KUBERNETES_EXEC_INFO: kubectl sets it to an
 * ExecCredential (with only `spec`) in the apiVersion its kubeconfig's exec block asked for.
 * Unset, v1.
 *
 * @param info The variable's value.
 * @returns The apiVersion.
 * @throws {UsageError} When the variable is not an ExecCredential naming a version written here.
 */
export function execCredentialApiVersion(info: string | undefined): string {
  if (info === undefined || info.trim() === "") return EXEC_CREDENTIAL_VERSIONS[0]!;
  const decoded = decodeJson(info);
  const apiVersion = decoded.kind === "object" ? decoded.object.apiVersion : undefined;
  if (typeof apiVersion !== "string") {
    throw new UsageError(
      "KUBERNETES_EXEC_INFO is not an ExecCredential with an apiVersion: unset it, or let kubectl set it",
    );
  }
  if (!EXEC_CREDENTIAL_VERSIONS.includes(apiVersion)) {
    throw new UsageError(
      `KUBERNETES_EXEC_INFO asks for apiVersion "${
        summarise(apiVersion, [], 100)
      }": set the kubeconfig's exec apiVersion to ${EXEC_CREDENTIAL_VERSIONS.join(" or ")}`,
    );
  }
  return apiVersion;
}

/**
 * A variable name in the usual form, which is safe to quote: upper case, and with an underscore
 * or short (an access key ID such as `AKIAIOSFODNN7EXAMPLE` is upper case too). The hooks apply the
 * same rule (lib/plugin.bash, token_exchange_quotable_name).
 */
const CONVENTIONAL_ENV_NAME = /^(?=[A-Z0-9_]*_|[A-Z0-9_]{1,12}$)[A-Z_][A-Z0-9_]{0,63}$/;

/** A variable name for a message: quoted if it looks like one, since a mistaken value may be a secret. */
function quotedVariable(name: string): string {
  return CONVENTIONAL_ENV_NAME.test(name) ? `"${name}"` : "(its name not shown)";
}

/** The client ID, and the client secret from the variable `client-secret-env` names. */
function readClient(options: OptionValues): Pick<
  CliConfig,
  "clientId" | "clientSecret" | "clientSecretEnv"
> {
  const clientId = options.string("client-id")?.value;
  const secretEnv = options.envName("client-secret-env", "the secret", "STS_CLIENT_SECRET");
  if (secretEnv === undefined) {
    return { clientId, clientSecret: undefined, clientSecretEnv: undefined };
  }
  if (/^BUILDKITE_/.test(secretEnv.value)) {
    // Never quoted: the agent's own variables are never sent, whatever they are called.
    throw new UsageError(
      `${secretEnv.from} names a variable of the Buildkite agent's (BUILDKITE_…), which is never sent to a token endpoint: hold the client secret in a variable of your own, such as STS_CLIENT_SECRET`,
    );
  }
  const clientSecret = options.env(secretEnv.value);
  if (clientSecret === undefined || clientSecret === "") {
    throw new UsageError(
      `Client secret variable ${
        quotedVariable(secretEnv.value)
      } (${secretEnv.from}) is unset or empty: set it, for example from your secrets manager`,
    );
  }
  if (clientId === undefined) {
    throw new UsageError(
      `A client secret (${secretEnv.from}) needs a client ID: set ${
        secretEnv.from.startsWith("--") ? "--client-id" : "client-id"
      }`,
    );
  }
  return { clientId, clientSecret, clientSecretEnv: secretEnv.value };
}

/** `--extra-param NAME=VALUE` (or `extra-params`), grouped by name. */
function readExtraParameters(options: OptionValues): Record<string, string[]> {
  const extra = options.list("extra-param");
  const parameters: Record<string, string[]> = {};
  for (const item of extra.value) {
    const eq = item.indexOf("=");
    if (eq < 1) {
      throw new UsageError(
        `${extra.from} has "${item}", not NAME=VALUE: use a parameter such as connector_id=buildkite`,
      );
    }
    (parameters[item.slice(0, eq)] ??= []).push(item.slice(eq + 1));
  }
  return parameters;
}

/** The option behind each exchange parameter the CLI sets, by its flag's name. */
const PARAMETER_FLAGS: Partial<Record<keyof TokenExchangeParameters, string>> = {
  tokenEndpoint: "token-endpoint",
  subjectTokenType: "subject-token-type",
  audience: "target-audience",
  resource: "resource",
  scope: "scope",
  requestedTokenType: "requested-token-type",
  extraParameters: "extra-param",
  clientId: "client-id",
  clientSecret: "client-secret-env",
  clientAuth: "client-auth",
  grantType: "grant-type",
};

/** How the library's messages name each parameter in this run: as the option the user set. */
export function parameterLabel(config: CliConfig): ParameterLabel {
  return (name) => {
    const flag = PARAMETER_FLAGS[name];
    return flag === undefined ? name : optionLabel(config.names, flag);
  };
}

/**
 * An option's name for a message in this run: `--flag`, or as `pipeline.yml` spells it.
 *
 * @param config The configuration.
 * @param flag The flag's name, without `--`.
 * @returns The name to show.
 */
export function labelOf(config: CliConfig, flag: string): string {
  return optionLabel(config.names, flag);
}

/** The exchange parameters of a configuration, without the endpoint and subject token. */
export function exchangeParameters(config: CliConfig): ExchangeParameters {
  return {
    subjectTokenType: config.subjectTokenType,
    audience: config.targetAudience,
    resource: config.resource,
    scope: config.scope,
    requestedTokenType: config.requestedTokenType,
    extraParameters: config.extraParameters,
    clientId: config.clientId,
    clientSecret: config.clientSecret,
    clientAuth: config.clientAuth,
    grantType: config.grantType,
  };
}
