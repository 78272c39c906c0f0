// The plugin's engine: what the hooks start (`cli.ts --plugin …`) to do everything but launch. It
// reads and checks the options, gets the OIDC token the agent printed on stdin, exchanges it (or
// not, for AWS and Google), writes every file, and tells the hooks what to hand to the redactor,
// what to export and when to renew, in lines on stdout (docs/cli.md lists them). Three runs:
//
//   hook JOB_DIR OPTIONS AGENT_ARG…     the environment or pre-command hook's
//   renew ENTRY_DIR OPTIONS AGENT_ARG…  the refresher's, once a renewal is due
//   cleanup ENTRY_DIR                   pre-exit's, for a token-file outside the entry's directory
//
// OPTIONS names the BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables that are set (comma-separated),
// and AGENT_ARG… are the arguments the hook gave `buildkite-agent`, which must be the ones the
// options say. Unlike the library, this module uses Deno APIs.

import { assumeRoleWithWebIdentity, type AwsCredentials } from "./_aws.ts";
import {
  exchangeFor,
  explainToken,
  failureLines,
  openSession,
  readPemFile,
} from "./_cli_exchange.ts";
import { type Env, UsageError } from "./_cli_flags.ts";
import { checkGoogle } from "./_google.ts";
import { AWS_PROFILE, awsConfigFile, googleExternalAccount, kubeconfig } from "./_handover.ts";
import { decodeJwt } from "./_jwt.ts";
import {
  checkNewFile,
  createFile,
  describePath,
  type EntryManifest,
  EXTERNAL_DIRS,
  type FileRecord,
  makeEntryDir,
  MANIFEST,
  openJobDir,
  type Owner,
  PluginError,
  readJobDir,
  readManifest,
  removeFile,
  replaceFile,
  writePrivateFile,
} from "./_plugin_files.ts";
import { type PluginConfig, readPluginConfig } from "./_plugin_options.ts";
import type { AwsOptions } from "./_plugin_providers.ts";
import { oneLine, summarise } from "./_redact.ts";
import {
  failed,
  nextRenewal,
  type Obtained,
  type RefreshState,
  succeeded,
} from "./_refresh_schedule.ts";
import type { TokenExchangeResponse } from "./_response.ts";
import { buildkiteAgentArgs, getSubjectToken } from "./_subject_token.ts";

/** The variables the agent's own commands read its access token from. */
const AGENT_SECRETS = ["BUILDKITE_AGENT_ACCESS_TOKEN"];
/** The file in an entry's directory where a renewal's failure waits for pre-exit to show it. */
const REFRESHER_ERROR = "refresher.error";
/** The file in an entry's directory that says how often the refresher renewed, for pre-exit. */
const REFRESHER_STATUS = "refresher.status";

/** The lines on stdout that the hooks read. */
const hooks = {
  line(kind: string, text?: string): void {
    console.log(text === undefined ? kind : `${kind} ${oneLine(text)}`);
  },
  /** A failure for the job log: 🚨 and what went wrong, details indented; and the exit status. */
  fail(status: number, headline: string, details: readonly string[] = []): number {
    console.log(`fail 🚨 ${oneLine(headline)}`);
    for (const line of details) console.log(`fail    ${oneLine(line)}`);
    hooks.line("!exit", String(status));
    return status;
  },
};

/** Writes a debug line on stderr, which reaches the job log as it happens. */
function debugLine(line: string): void {
  console.error(`token-exchange: debug: ${oneLine(line)}`);
}

/** Reads a variable; one the engine may not read is unset. */
const env: Env = (name) => {
  try {
    return Deno.env.get(name);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return undefined;
    throw error;
  }
};

interface Invocation {
  run: "hook" | "renew" | "cleanup";
  /** The job's directory (hook) or the entry's (renew, cleanup). */
  dir: string;
  options: string[];
  agent: string[];
}

function parseInvocation(args: readonly string[]): Invocation {
  const [run, dir, options = "", ...agent] = args;
  if ((run !== "hook" && run !== "renew" && run !== "cleanup") || !dir?.startsWith("/")) {
    throw new UsageError(
      "cli.ts --plugin is how the plugin's hooks run the engine: run cli.ts without it",
    );
  }
  return { run, dir, options: options.split(",").filter((name) => name), agent };
}

/**
 * Runs the plugin's engine for a hook (see the module's comment).
 *
 * @param args The arguments after `--plugin`.
 * @returns The exit status: 0, 2 for a configuration error, 1 for any other failure.
 */
export async function runPlugin(args: readonly string[]): Promise<number> {
  let invocation: Invocation;
  try {
    invocation = parseInvocation(args);
  } catch (error) {
    return hooks.fail(2, (error as Error).message);
  }
  switch (invocation.run) {
    case "hook":
      return await hook(invocation);
    case "renew":
      return await renew(invocation);
    case "cleanup":
      return cleanup(invocation);
  }
}

/** A failure before any request: 🚨 and the message, exit 2 for a mistake in the options. */
function refuse(error: unknown): number {
  if (error instanceof UsageError) return hooks.fail(2, `Configuration error: ${error.message}`);
  if (error instanceof PluginError) return hooks.fail(1, error.message);
  return hooks.fail(1, `Unexpected error: ${error instanceof Error ? error.message : error}`);
}

/** Reads the options and checks the hook asked the agent for what they say. */
function readOptions(invocation: Invocation): PluginConfig {
  const config = readPluginConfig(invocation.options, { env, cwd: Deno.cwd() });
  const expected = buildkiteAgentArgs(config.source);
  if (expected.join("\0") !== invocation.agent.join("\0")) {
    throw new PluginError(
      `The hook asked buildkite-agent for "${
        invocation.agent.join(" ")
      }", but the options ask for "${
        expected.join(" ")
      }": this is a bug in the plugin, please report it`,
    );
  }
  return config;
}

/** The variables of AWS's static credentials, which `aws-credentials: environment` exports. */
const AWS_KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
/** What `aws-role-arn` exports for the AWS tools to assume the role themselves. */
const AWS_WEB_IDENTITY = [
  "AWS_ROLE_ARN",
  "AWS_WEB_IDENTITY_TOKEN_FILE",
  "AWS_ROLE_SESSION_NAME",
  "AWS_CONFIG_FILE",
  "AWS_PROFILE",
];
/**
 * Variables of the agent's environment with which the AWS tools would use other credentials than
 * the role's: `aws-role-arn` unsets them (AWS_DEFAULT_PROFILE is the old CLI's AWS_PROFILE).
 */
const AWS_AMBIENT = [...AWS_KEYS, "AWS_PROFILE", "AWS_DEFAULT_PROFILE"];

/** What an entry exports and writes, worked out before anything is asked for. */
interface Plan {
  label: string;
  exports: string[];
  secrets: string[];
}

function plan(config: PluginConfig): Plan {
  const exports: string[] = [];
  const secrets: string[] = [];
  let label: string;
  switch (config.mode) {
    case "exchange":
      label = `env-var ${config.envVar}`;
      exports.push(config.envVar, `${config.envVar}_EXPIRES_AT`);
      secrets.push(config.envVar);
      if (config.tokenFile !== undefined) exports.push(`${config.envVar}_FILE`);
      if (config.kubernetes !== undefined) exports.push("KUBECONFIG");
      break;
    case "aws": {
      const aws = config.aws!;
      label = `aws-role-arn ${aws.roleArn}`;
      if (aws.credentials === "environment") {
        exports.push(...AWS_KEYS, "AWS_CREDENTIAL_EXPIRATION");
        secrets.push("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN");
      } else {
        exports.push(...AWS_WEB_IDENTITY);
      }
      if (aws.region !== undefined) exports.push("AWS_REGION", "AWS_DEFAULT_REGION");
      break;
    }
    case "google":
      label = `google-credentials for ${config.google!.audience}`;
      exports.push("GOOGLE_APPLICATION_CREDENTIALS", "CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE");
      break;
  }
  if (config.oidcTokenVar !== undefined) exports.push(config.oidcTokenVar);
  return { label, exports, secrets };
}

/**
 * Two entries of one step may not export the same variable or write the same file; and the client
 * secret is never a variable that this plugin exports (a token it issued, a file's path).
 */
function checkConflicts(config: PluginConfig, entry: Plan, others: readonly EntryManifest[]) {
  const path = config.tokenFile?.kind === "path" ? config.tokenFile.path : undefined;
  const secretEnv = config.exchange?.clientSecretEnv;
  if (
    secretEnv !== undefined &&
    [entry, ...others].some((exporter) => exporter.exports.includes(secretEnv))
  ) {
    throw new UsageError(
      "client-secret-env names a variable this plugin exports (a token it issued, or a file's path), which is never sent as a client secret: hold the client secret in a variable of your own, such as STS_CLIENT_SECRET",
    );
  }
  for (const other of others) {
    const named = `this step's token-exchange entry ${other.number} (${other.label})`;
    const shared = entry.exports.find((name) => other.exports.includes(name));
    if (shared !== undefined) {
      const fix = config.mode === "exchange" && shared.startsWith(config.envVar)
        ? "give each entry its own env-var"
        : config.oidcTokenVar === shared
        ? "give each entry its own oidc-token-file variable"
        : `use one ${config.mode === "aws" ? "aws-role-arn" : "google-credentials"} entry per step`;
      throw new UsageError(`This entry would export ${shared}, which ${named} exports: ${fix}`);
    }
    if (path !== undefined && other.files.some((file) => file.path === path)) {
      throw new UsageError(
        `token-file ${path} is written by ${named} too: give each entry its own token-file`,
      );
    }
  }
}

function header(config: PluginConfig): string {
  switch (config.mode) {
    case "exchange":
      return `~~~ :key: Exchanging the job's OIDC token for ${config.envVar}`;
    case "aws":
      return `~~~ :key: Assuming ${config.aws!.roleArn} with the job's OIDC token`;
    case "google":
      return `~~~ :key: Google Cloud credentials for the job's OIDC token, through ${
        config.google!.audience
      }`;
  }
}

/** This process's user and group (null only on Windows, where the plugin does not run). */
function owner(): Owner {
  return { uid: Deno.uid() ?? -1, gid: Deno.gid() ?? -1 };
}

const now = () => Math.floor(Date.now() / 1000);

/** What one run obtained: the OIDC token, and what it was exchanged for. */
interface Tokens {
  subjectToken?: string;
  /** The issued token, with an exchange. */
  issued?: TokenExchangeResponse;
  /** The role's credentials, when the hook assumed it (`aws-role-arn`). */
  aws?: AwsCredentials;
}

/** What was obtained, for the refresher's schedule. */
function obtained(config: PluginConfig, tokens: Tokens): Obtained {
  const exp = (token: string) => {
    const value = decodeJwt(token)?.claims.exp;
    return typeof value === "number" && Number.isFinite(value) ? value : undefined;
  };
  return {
    at: now(),
    issuedExpiresIn: tokens.issued?.expiresIn,
    issuedExp: tokens.issued === undefined ? undefined : exp(tokens.issued.accessToken),
    oidcExp: config.keepsOidcToken ? exp(tokens.subjectToken!) : undefined,
  };
}

/** The job's time-out in minutes (BUILDKITE_TIMEOUT), if it has one. */
function jobTimeout(): number | undefined {
  const value = env("BUILDKITE_TIMEOUT");
  return value !== undefined && /^\d{1,6}$/.test(value) ? Number(value) : undefined;
}

/** The files of an entry: the OIDC token, the issued token, the Google credentials. */
interface Written {
  tokenPath: string | undefined;
  files: FileRecord[];
}

/**
 * Writes an entry's files from the tokens just obtained. Each file is written whole before it
 * replaces the last (so the SIGTERM of pre-exit, handled between them, never leaves half a file).
 * The files that hold no token (Google's credentials, the AWS config, the kubeconfig) are written
 * by the hook only, when `records` is undefined.
 */
function writeFiles(
  config: PluginConfig,
  dir: string,
  tokens: Tokens,
  records: readonly FileRecord[] | undefined,
  kubernetesCa?: string,
): Written {
  const files: FileRecord[] = [];
  let tokenPath: string | undefined;
  const issued = tokens.issued;
  if (config.keepsOidcToken) writePrivateFile(`${dir}/oidc-token`, tokens.subjectToken!);
  if (issued !== undefined && config.tokenFile?.kind === "private") {
    tokenPath = `${dir}/token`;
    writePrivateFile(tokenPath, issued.accessToken);
  } else if (issued !== undefined && config.tokenFile?.kind === "path") {
    const { path, given } = config.tokenFile;
    tokenPath = path;
    const record = records?.find((file) => file.path === path);
    try {
      files.push(
        record === undefined
          ? createFile(path, issued.accessToken)
          : replaceFile(record, issued.accessToken),
      );
    } catch (error) {
      if (error instanceof PluginError) throw error;
      if (error instanceof Deno.errors.AlreadyExists) checkNewFile(path, given, owner());
      throw new PluginError(
        `Cannot write token-file ${describePath(path, given)}: ${
          (error as Error).message
        }; check its directory is writable, or use token-file: true for a private one`,
      );
    }
  }
  if (records !== undefined) return { tokenPath, files };
  if (config.google !== undefined) {
    writePrivateFile(
      `${dir}/google-credentials.json`,
      googleExternalAccount(config.google, `${dir}/oidc-token`),
    );
  }
  if (config.aws?.credentials === "web-identity") {
    try {
      writePrivateFile(`${dir}/aws-config`, awsConfigFile(config.aws, `${dir}/oidc-token`));
    } catch (error) {
      if (error instanceof TypeError) throw new PluginError(error.message);
      throw error;
    }
  }
  if (config.kubernetes !== undefined) {
    writePrivateFile(
      `${dir}/kubeconfig`,
      kubeconfig(config.kubernetes.server, kubernetesCa, tokenPath!),
    );
  }
  return { tokenPath, files };
}

/** An RFC 3339 time in UTC, to the second. */
function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** What the hook exports, and the line that says so. */
function exportsOf(
  config: PluginConfig,
  dir: string,
  written: Written,
  tokens: Tokens,
): { variables: [string, string][]; summary: string } {
  const variables: [string, string][] = [];
  let summary: string;
  let lifetime = "";
  switch (config.mode) {
    case "exchange": {
      const issued = tokens.issued!;
      variables.push([config.envVar, issued.accessToken]);
      summary = config.envVar;
      if (written.tokenPath !== undefined) {
        variables.push([`${config.envVar}_FILE`, written.tokenPath]);
        summary += ` and ${config.envVar}_FILE (${written.tokenPath})`;
      }
      if (config.kubernetes !== undefined) {
        variables.push(["KUBECONFIG", `${dir}/kubeconfig`]);
        summary += `, KUBECONFIG (for ${config.kubernetes.server.origin})`;
      }
      const expiresIn = issued.expiresIn;
      if (expiresIn !== undefined) {
        variables.push([`${config.envVar}_EXPIRES_AT`, rfc3339(now() + Math.floor(expiresIn))]);
        lifetime = expiresIn >= 120
          ? ` (expires in ${Math.floor(expiresIn / 60)} min)`
          : ` (expires in ${Math.floor(expiresIn)} s)`;
      }
      break;
    }
    case "aws":
      summary = awsExports(config.aws!, dir, tokens.aws!, variables);
      break;
    case "google": {
      const file = `${dir}/google-credentials.json`;
      variables.push(
        ["GOOGLE_APPLICATION_CREDENTIALS", file],
        ["CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE", file],
      );
      summary =
        `GOOGLE_APPLICATION_CREDENTIALS and CLOUDSDK_AUTH_CREDENTIAL_FILE_OVERRIDE (${file})`;
      break;
    }
  }
  if (config.oidcTokenVar !== undefined) {
    variables.push([config.oidcTokenVar, `${dir}/oidc-token`]);
    summary += `, ${config.oidcTokenVar}`;
  }
  if (config.refresh) summary += "; kept fresh until the job ends";
  return { variables, summary: `Exported ${summary}${lifetime}` };
}

/** What `aws-role-arn` exports (into `variables`), and the line's words for them. */
function awsExports(
  aws: AwsOptions,
  dir: string,
  credentials: AwsCredentials,
  variables: [string, string][],
): string {
  let summary: string;
  if (aws.credentials === "environment") {
    variables.push(
      ["AWS_ACCESS_KEY_ID", credentials.accessKeyId],
      ["AWS_SECRET_ACCESS_KEY", credentials.secretAccessKey],
      ["AWS_SESSION_TOKEN", credentials.sessionToken],
      ["AWS_CREDENTIAL_EXPIRATION", credentials.expiration],
    );
    summary =
      `AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN (until ${credentials.expiration})`;
  } else {
    variables.push(
      ["AWS_ROLE_ARN", aws.roleArn],
      ["AWS_WEB_IDENTITY_TOKEN_FILE", `${dir}/oidc-token`],
      ["AWS_ROLE_SESSION_NAME", aws.sessionName],
      ["AWS_CONFIG_FILE", `${dir}/aws-config`],
      ["AWS_PROFILE", AWS_PROFILE],
    );
    summary =
      `AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE, AWS_ROLE_SESSION_NAME (${aws.sessionName}), AWS_CONFIG_FILE and AWS_PROFILE (${AWS_PROFILE}, this job's)`;
  }
  if (aws.region !== undefined) {
    variables.push(["AWS_REGION", aws.region], ["AWS_DEFAULT_REGION", aws.region]);
    summary += `, AWS_REGION and AWS_DEFAULT_REGION (${aws.region})`;
  }
  return summary;
}

/** Hands the tokens just obtained to the redactor, the issued ones first. */
function redactTokens(config: PluginConfig, tokens: Tokens) {
  if (!config.redact) return;
  if (tokens.issued !== undefined) hooks.line("redact", tokens.issued.accessToken);
  if (tokens.aws !== undefined && config.aws?.credentials === "environment") {
    hooks.line("redact", tokens.aws.secretAccessKey);
    hooks.line("redact", tokens.aws.sessionToken);
  }
  if (config.keepsOidcToken) hooks.line("redact", tokens.subjectToken!);
}

/** The first URL a run requests: the token endpoint (or issuer), AWS STS or Google's STS. */
function firstUrl(config: PluginConfig): URL {
  if (config.exchange !== undefined) {
    return config.exchange.tokenEndpoint ?? config.exchange.issuer!;
  }
  return config.aws?.stsUrl ?? new URL(config.google!.tokenUrl);
}

/**
 * Gets the OIDC token the agent printed, and exchanges it if this entry exchanges; in the hook
 * (`check`), assumes the AWS role or makes Google's exchange with it once, so that a trust policy
 * that does not match fails the job here. `onToken` runs once the OIDC token is there (the hook
 * starts the redactor then).
 */
async function obtain(
  config: PluginConfig,
  debug: ((line: string) => void) | undefined,
  tokens: Tokens,
  check: boolean,
  onToken?: () => void,
): Promise<void> {
  using session = config.exchange !== undefined || check
    ? openSession(config.http, firstUrl(config), debug)
    : undefined;
  tokens.subjectToken = await getSubjectToken(config.source, {}, env);
  onToken?.();
  if (session === undefined) return;
  await explainToken(session, config.source, tokens.subjectToken, [
    config.exchange?.clientSecret,
  ]);
  if (config.exchange !== undefined) {
    tokens.issued = await exchangeFor(config.exchange, tokens.subjectToken, session);
  } else if (config.aws !== undefined) {
    tokens.aws = await assumeRoleWithWebIdentity({
      stsUrl: config.aws.stsUrl,
      roleArn: config.aws.roleArn,
      sessionName: config.aws.sessionName,
      durationSeconds: config.aws.durationSeconds,
      webIdentityToken: tokens.subjectToken,
    }, session.http);
  } else {
    await checkGoogle(config.google!, tokens.subjectToken, session.http);
  }
}

/**
 * What went wrong after the options were read: what to change, then the OIDC token's iss, sub and
 * aud when the agent gave one (the usual key to a trust-policy mismatch).
 */
async function reasons(
  error: unknown,
  config: PluginConfig,
  subjectToken: string | undefined,
  debug: ((line: string) => void) | undefined,
): Promise<string[]> {
  if (error instanceof UsageError || error instanceof PluginError) return [error.message];
  return await failureLines(error, config.exchange, config.source, {
    subjectToken,
    clientSecret: config.exchange?.clientSecret,
  }, debug);
}

/** What the hook reads before it asks for anything: `kubernetes-ca`'s certificate. */
function readInputs(config: PluginConfig): { kubernetesCa?: string } {
  const ca = config.kubernetes?.caFile;
  return ca === undefined ? {} : { kubernetesCa: readPemFile(ca, "kubernetes-ca") };
}

async function hook(invocation: Invocation): Promise<number> {
  let config: PluginConfig;
  let entry: Plan;
  let others: EntryManifest[];
  let inputs: { kubernetesCa?: string };
  try {
    config = readOptions(invocation);
    entry = plan(config);
    others = readJobDir(invocation.dir, owner());
    checkConflicts(config, entry, others);
    if (config.tokenFile?.kind === "path") {
      checkNewFile(config.tokenFile.path, config.tokenFile.given, owner());
    }
    inputs = readInputs(config);
  } catch (error) {
    return refuse(error);
  }
  // The hook makes ready to start the redactor while the agent is still answering.
  if (config.redact) hooks.line("ready");
  hooks.line("say", header(config));
  const debug = config.debug ? debugLine : undefined;
  const tokens: Tokens = {};
  try {
    await obtain(config, debug, tokens, true, () => hooks.line("exchanging"));
    redactTokens(config, tokens);
    const { dir, written, manifest } = makeEntry(
      invocation.dir,
      config,
      entry,
      tokens,
      inputs.kubernetesCa,
    );
    const { variables, summary } = exportsOf(config, dir, written, tokens);
    hooks.line("entry", dir);
    for (const [name, value] of variables) hooks.line("export", `${name}=${value}`);
    if (manifest.refresh !== undefined) handOver(config, entry, others, manifest.refresh);
    sayChecked(config, entry, tokens);
    hooks.line("say", summary);
    hooks.line("ok");
    return 0;
  } catch (error) {
    const [first, ...more] = await reasons(error, config, tokens.subjectToken, debug);
    const what = error instanceof UsageError
      ? "Configuration error: "
      : error instanceof PluginError
      ? ""
      : config.mode === "exchange"
      ? "Token exchange failed: "
      : "";
    return hooks.fail(error instanceof UsageError ? 2 : 1, `${what}${first}`, more);
  }
}

/**
 * What the hook checked with the provider, and the AWS credentials of the agent's environment it
 * unset (which the AWS tools would use before the role's).
 */
function sayChecked(config: PluginConfig, entry: Plan, tokens: Tokens): void {
  if (config.aws !== undefined) {
    // The ARN is STS's: masked, in case it echoes the OIDC token.
    const arn = summarise(tokens.aws!.assumedRoleArn, [tokens.subjectToken!]);
    hooks.line("say", `Assumed ${arn}: its trust policy accepts this job`);
    // Those this entry exports anyway are replaced, not unset.
    const ambient = AWS_AMBIENT.filter((name) =>
      env(name) !== undefined && !entry.exports.includes(name)
    );
    for (const name of ambient) hooks.line("drop", name);
    if (ambient.length > 0) {
      hooks.line(
        "say",
        `Unset ${
          ambient.join(", ")
        } of the agent's environment, with which the AWS tools would not use the role`,
      );
    }
  } else if (config.google !== undefined) {
    const impersonated = config.google.serviceAccount === undefined
      ? ""
      : `, and ${config.google.serviceAccount} lets it impersonate it`;
    hooks.line(
      "say",
      `Google's STS accepts this job's OIDC token for ${config.google.audience}${impersonated}`,
    );
  }
}

/**
 * Makes the entry's directory and writes its files and its manifest, from the tokens just
 * obtained; on a failure, removes whatever it made.
 */
function makeEntry(
  jobDir: string,
  config: PluginConfig,
  entry: Plan,
  tokens: Tokens,
  kubernetesCa: string | undefined,
): { dir: string; written: Written; manifest: EntryManifest } {
  openJobDir(jobDir, owner());
  const made = makeEntryDir(jobDir);
  let written: Written | undefined;
  try {
    written = writeFiles(config, made.dir, tokens, undefined, kubernetesCa);
    const manifest: EntryManifest = {
      number: made.number,
      label: entry.label,
      exports: entry.exports,
      secrets: entry.secrets,
      files: written.files,
    };
    if (config.refresh) {
      manifest.refresh = succeeded(obtained(config, tokens), undefined, jobTimeout());
      writeStatus(made.dir, manifest);
    }
    if (written.files.length > 0) {
      const dirs = new Set(
        written.files.map((f) => f.path.slice(0, f.path.lastIndexOf("/")) || "/"),
      );
      writePrivateFile(`${made.dir}/${EXTERNAL_DIRS}`, `${[...dirs].join("\n")}\n`);
    }
    writePrivateFile(`${made.dir}/${MANIFEST}`, JSON.stringify(manifest));
    return { dir: made.dir, written, manifest };
  } catch (error) {
    for (const file of written?.files ?? []) removeFile(file);
    Deno.removeSync(made.dir, { recursive: true });
    throw error;
  }
}

/**
 * What the hook needs to start the refresher: when to renew first, and which variables to keep
 * out of its environment. It keeps no secret there: those its renewals need are handed to it
 * privately, and every token this job's entries exported it does not need at all.
 */
function handOver(
  config: PluginConfig,
  entry: Plan,
  others: readonly EntryManifest[],
  state: RefreshState,
): void {
  const needed = [...AGENT_SECRETS];
  if (config.exchange?.clientSecretEnv !== undefined) needed.push(config.exchange.clientSecretEnv);
  for (const name of needed) hooks.line("private", name);
  for (const name of new Set([...entry.secrets, ...others.flatMap((o) => o.secrets)])) {
    hooks.line("unset", name);
  }
  const next = nextRenewal(now(), state);
  hooks.line("refresh", String(next.kind === "wait" ? next.seconds : 1));
}

async function renew(invocation: Invocation): Promise<number> {
  const dir = invocation.dir;
  const manifest = readManifest(dir);
  let config: PluginConfig;
  try {
    config = readOptions(invocation);
  } catch (error) {
    return stop(dir, `the options cannot be read again: ${(error as Error).message}`);
  }
  if (manifest?.refresh === undefined) return stop(dir, "its entry's record is gone");
  const tokens: Tokens = {};
  let state: RefreshState;
  try {
    await obtain(config, undefined, tokens, false);
    redactTokens(config, tokens);
    // pre-exit stops a renewal with SIGTERM: it ends the run between two files, never in one.
    Deno.addSignalListener("SIGTERM", () => Deno.exit(143));
    const written = writeFiles(config, dir, tokens, manifest.files);
    state = succeeded(obtained(config, tokens), manifest.refresh);
    if (written.files.length > 0) manifest.files = written.files;
    removeIfThere(`${dir}/${REFRESHER_ERROR}`);
  } catch (error) {
    const lines = await reasons(error, config, tokens.subjectToken, undefined);
    writePrivateFile(`${dir}/${REFRESHER_ERROR}`, warning(manifest, lines));
    state = failed(manifest.refresh);
  }
  manifest.refresh = state;
  writePrivateFile(`${dir}/${MANIFEST}`, JSON.stringify(manifest));
  writeStatus(dir, manifest);
  const next = nextRenewal(now(), state);
  if (next.kind === "stop") return stop(dir, next.reason, manifest);
  hooks.line("next", String(next.seconds));
  return 0;
}

/** Says, for pre-exit, how often the refresher renewed the entry's files, and when it last did. */
function writeStatus(dir: string, manifest: EntryManifest): void {
  const { renewals, failures, obtainedAt } = manifest.refresh!;
  const times = (n: number, what: string) => `${n} ${what}${n === 1 ? "" : "s"}`;
  const failed = `${times(failures, "attempt")} ${renewals === 0 ? "" : "after that "}failed`;
  const said = renewals === 0
    ? `renewed nothing: ${failures === 0 ? "the first tokens outlived the job" : failed}`
    : `renewed this entry's files ${times(renewals, "time")}, last at ${
      new Date(obtainedAt * 1000).toISOString().slice(11, 19)
    } UTC${failures === 0 ? "" : `; ${failed}`}`;
  writePrivateFile(
    `${dir}/${REFRESHER_STATUS}`,
    `The token refresher (${manifest.label}) ${said}\n`,
  );
}

/** What pre-exit shows of the refresher's last failure: one warning line, then the details. */
function warning(manifest: EntryManifest | undefined, lines: readonly string[]): string {
  const [first, ...more] = lines.map(oneLine);
  return [
    `⚠️ The token refresher (${manifest?.label ?? "this entry"}) failed: ${first}`,
    ...more.map((line) => `   ${line}`),
    "",
  ].join("\n");
}

function removeIfThere(path: string): void {
  try {
    Deno.removeSync(path);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
}

/** The refresher ends, and pre-exit will say why (the last failure, if there was one). */
function stop(dir: string, reason: string, manifest = readManifest(dir)): number {
  try {
    Deno.lstatSync(`${dir}/${REFRESHER_ERROR}`);
  } catch {
    writePrivateFile(`${dir}/${REFRESHER_ERROR}`, warning(manifest, [reason]));
  }
  hooks.line("stop");
  return 0;
}

function cleanup(invocation: Invocation): number {
  for (const file of readManifest(invocation.dir)?.files ?? []) {
    if (!removeFile(file)) {
      hooks.line(
        "warn",
        `⚠️ token-file ${file.path} was replaced or removed during the job, so it was left as it is`,
      );
    }
  }
  hooks.line("ok");
  return 0;
}
