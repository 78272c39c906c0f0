// The plugin's engine: what the hooks start (`cli.ts --plugin …`) to do everything but launch. It
// reads and checks the options, gets the OIDC token the agent printed on stdin, trades it as the
// mode says (_plugin_modes.ts), writes every file, and tells the hooks what to hand to the
// redactor, what to export and when to renew, in lines on stdout (docs/cli.md lists them). Three
// runs:
//
//   hook JOB_DIR OPTIONS AGENT_ARG…     the environment or pre-command hook's
//   renew ENTRY_DIR OPTIONS AGENT_ARG…  the refresher's, once a renewal is due
//   cleanup ENTRY_DIR                   pre-exit's: revokes the entry's token (revoke), and removes
//                                       a token-file outside the entry's directory
//
// OPTIONS names the BUILDKITE_PLUGIN_TOKEN_EXCHANGE_* variables that are set (comma-separated),
// and AGENT_ARG… are the arguments the hook gave `buildkite-agent`, which must be the ones the
// options say. Unlike the library, this module uses Deno APIs.

import { explainToken, failureLines, openSession, readPemFile } from "./_cli_exchange.ts";
import { type Env, UsageError } from "./_cli_flags.ts";
import { awsConfigFile, googleExternalAccount, kubeconfig } from "./_handover.ts";
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
import {
  ask,
  checked,
  exportsOf,
  firstUrl,
  header,
  type Plan,
  plan,
  redactable,
  requests,
  type Tokens,
} from "./_plugin_modes.ts";
import { MODE_OPTIONS, type PluginConfig, readPluginConfig } from "./_plugin_options.ts";
import { REVOKE_FILE, type RevokeRecord, revokeRecord, revokeRecorded } from "./_plugin_revoke.ts";
import { oneLine } from "./_redact.ts";
import {
  failed,
  nextRenewal,
  type Obtained,
  type RefreshState,
  succeeded,
} from "./_refresh_schedule.ts";
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
      return await cleanup(invocation);
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
      const fix = shared.startsWith(config.envVar)
        ? "give each entry its own env-var"
        : config.oidcTokenVar === shared
        ? "give each entry its own oidc-token-file variable"
        : `use one ${MODE_OPTIONS[config.mode]} entry per step`;
      throw new UsageError(`This entry would export ${shared}, which ${named} exports: ${fix}`);
    }
    if (path !== undefined && other.files.some((file) => file.path === path)) {
      throw new UsageError(
        `token-file ${path} is written by ${named} too: give each entry its own token-file`,
      );
    }
  }
}

/** This process's user and group (null only on Windows, where the plugin does not run). */
function owner(): Owner {
  return { uid: Deno.uid() ?? -1, gid: Deno.gid() ?? -1 };
}

const now = () => Math.floor(Date.now() / 1000);

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
  /** Why pre-exit will not revoke the token that `revoke` asks it to, if it will not. */
  revokeWarning?: string;
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
  const { record, warning: revokeWarning } = revokeRecord(config, tokens);
  if (record !== undefined) writePrivateFile(`${dir}/${REVOKE_FILE}`, JSON.stringify(record));
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
  return { tokenPath, files, revokeWarning };
}

/** Hands the tokens just obtained to the redactor, the issued ones first. */
function redactTokens(config: PluginConfig, tokens: Tokens) {
  if (!config.redact) return;
  for (const secret of redactable(config, tokens)) hooks.line("redact", secret);
}

/**
 * Gets the OIDC token the agent printed, and trades it as the mode says (in the hook, `check`,
 * with the one check of an AWS role, Google's exchange or an Entra federated credential, so that a
 * trust policy that does not match fails the job here). `onToken` runs once the OIDC token is there
 * (the hook starts the redactor then).
 */
async function obtain(
  config: PluginConfig,
  debug: ((line: string) => void) | undefined,
  tokens: Tokens,
  check: boolean,
  onToken?: () => void,
): Promise<void> {
  using session = requests(config, check)
    ? openSession(config.http, firstUrl(config), debug)
    : undefined;
  tokens.subjectToken = await getSubjectToken(config.source, {}, env);
  onToken?.();
  if (session === undefined) return;
  await explainToken(session, config.source, tokens.subjectToken, [
    config.exchange?.clientSecret,
  ]);
  await ask(config, tokens, session, check);
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
    const { variables, summary } = exportsOf(config, dir, written.tokenPath, tokens, now());
    hooks.line("entry", dir);
    for (const [name, value] of variables) hooks.line("export", `${name}=${value}`);
    if (manifest.refresh !== undefined) handOver(config, entry, others, manifest.refresh);
    const { lines, unset } = checked(config, entry, tokens, env);
    for (const name of unset) hooks.line("drop", name);
    for (const line of lines) hooks.line("say", line);
    if (written.revokeWarning !== undefined) hooks.line("warn", written.revokeWarning);
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

/** What the hook recorded for pre-exit to revoke (a regular file of the entry's), if anything. */
function readRevokeRecord(dir: string): RevokeRecord | undefined {
  try {
    if (!Deno.lstatSync(`${dir}/${REVOKE_FILE}`).isFile) return undefined;
    return JSON.parse(Deno.readTextFileSync(`${dir}/${REVOKE_FILE}`)) as RevokeRecord;
  } catch {
    return undefined;
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

async function cleanup(invocation: Invocation): Promise<number> {
  const record = readRevokeRecord(invocation.dir);
  if (record !== undefined) {
    const warning = await revokeRecorded(record, env);
    if (warning !== undefined) hooks.line("warn", warning);
    removeIfThere(`${invocation.dir}/${REVOKE_FILE}`);
  }
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
