#!/usr/bin/env -S deno run --no-prompt --allow-net --allow-env
/**
 * The `token-exchange` command: exchanges a CI job's OIDC token for a federated access token with
 * OAuth 2.0 Token Exchange (RFC 8693) and prints it. Every option is a flag that falls back to its
 * `BUILDKITE_PLUGIN_TOKEN_EXCHANGE_*` variable. The subject token comes from
 * `buildkite-agent oidc request-token`, or with `--subject-token-source github-actions|gitlab`
 * from those CI systems, or from `--subject-token-env` / `--subject-token-file`. `--format
 * kubernetes` prints it as a Kubernetes ExecCredential, for a kubeconfig's exec user. Exit status: 0
 * success, 2 usage or configuration error (found before anything is run or sent), 1 any other
 * failure.
 *
 * It runs from JSR or any URL as well as from a checkout: it reads no file of its own at run time.
 * Give it the narrowest permissions: network access to the endpoint's host only, the environment,
 * and in a Buildkite job `buildkite-agent` as the only program it may run. Elsewhere leave
 * `--allow-run` out: there is no agent to run, and Deno would note on stderr that it cannot find
 * one. (The first line of this file, for `./cli.ts`, grants no `--allow-run`.)
 *
 * ```sh
 * deno run --no-prompt --allow-net=sts.example.com --allow-run=buildkite-agent --allow-env \
 *   jsr:@equinixmetal/token-exchange/cli --token-endpoint https://sts.example.com/token
 * deno run --no-prompt --allow-net=sts.example.com --allow-env \
 *   jsr:@equinixmetal/token-exchange/cli --token-endpoint https://sts.example.com/token \
 *   --subject-token-env MY_OIDC_TOKEN
 * ```
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2}
 *
 * @example Running the command from code, with an environment of your own
 * ```ts
 * import { main } from "@equinixmetal/token-exchange/cli";
 * import assert from "node:assert/strict";
 *
 * const noEnvironment = () => undefined;
 * assert.equal(await main(["--version"], noEnvironment), 0);
 * assert.equal(await main(["--no-such-flag"], noEnvironment), 2);
 * ```
 *
 * @module
 */

import { type CliConfig, exchangeParameters, labelOf, parseCommandLine } from "./_cli_config.ts";
import { type Env, helpText, UsageError } from "./_cli_flags.ts";
import { directLoopbackFetch } from "./_direct_fetch.ts";
import { InvalidResponseError, TokenExchangeError } from "./_errors.ts";
import { exchange } from "./_exchange.ts";
import type { HttpInternals, HttpOptions } from "./_http.ts";
import { maskSecrets, oneLine, summarise } from "./_redact.ts";
import { type TokenExchangeResponse, tokenProblem } from "./_response.ts";
import { getSubjectToken, SubjectTokenError } from "./_subject_token.ts";
import { VERSION } from "./_constants.ts";

const PREFIX = "token-exchange:";

/**
 * Writes one line on stderr: the prefix, then the text flattened onto one line. Every line the
 * command writes on stderr goes through here, so that no text from outside (a server's, the
 * agent's, a token's claims) can start a line of its own and pass for `^^^ +++` or for this
 * command's own output.
 */
function say(text: string): void {
  console.error(`${PREFIX} ${oneLine(text)}`);
}

/**
 * Where the error lines go: stderr, or stdout for `--format hook` (the hooks show them after
 * `^^^ +++`, while debug lines reach the job log on stderr as they happen). Known from the
 * arguments before they are parsed, so that a usage error goes there too.
 */
function errorWriter(args: readonly string[]): (text: string) => void {
  const hookFormat = args.some((arg, i) =>
    arg === "--format=hook" || (arg === "--format" && args[i + 1] === "hook")
  );
  return hookFormat ? (text) => console.log(`${PREFIX} ${oneLine(text)}`) : say;
}

/** The JSON output, with DEL, C1 and the Unicode line separators escaped as well as C0. */
function safeJson(value: unknown): string {
  return JSON.stringify(value).replace(
    /[\u007f-\u009f\u2028\u2029]/g,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
}

// Modules only some runs need are loaded when needed: each module costs start-up time.
const loadReport = () => import("./_cli_report.ts");
const loadExecCredential = () => import("./_exec_credential.ts");

/** The JSON output: the response fields that are present, in a fixed order. */
function toJson(result: TokenExchangeResponse): string {
  return safeJson({
    access_token: result.accessToken,
    issued_token_type: result.issuedTokenType,
    token_type: result.tokenType,
    expires_in: result.expiresIn,
    scope: result.scope,
    refresh_token: result.refreshToken,
  });
}

/** What the command prints on success, in the configured format. */
async function output(config: CliConfig, result: TokenExchangeResponse): Promise<string> {
  switch (config.format) {
    case "hook":
      // "ok", the token (printable ASCII, checked), then its lifetime in seconds when known: the
      // hook reads these three lines and goes on while Deno shuts down.
      return `ok\n${result.accessToken}\n${
        result.expiresIn === undefined ? "" : Math.floor(result.expiresIn)
      }`;
    case "json":
      if (result.refreshToken !== undefined) {
        const problem = tokenProblem(result.refreshToken);
        if (problem !== undefined) {
          throw new InvalidResponseError(
            `Token endpoint answered HTTP 200 with a "refresh_token" that ${problem}`,
            { status: 200 },
          );
        }
      }
      return toJson(result);
    case "kubernetes":
      return (await loadExecCredential()).execCredential(
        config.execCredentialApiVersion!,
        result.accessToken,
        result.expiresIn,
        Date.now(),
      );
    case "token":
      return result.accessToken;
  }
}

/**
 * Runs the command: reads the options, gets the subject token, exchanges it, and prints the
 * issued token (or the response fields as JSON, or a Kubernetes ExecCredential) on stdout, or one
 * error line on stderr.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc8693#section-2.1}
 *
 * @param args The command-line arguments, without the program name.
 * @param env Reads an environment variable: the plugin's options, the client secret, and the
 * subject token's variable (`--subject-token-env`, GitLab's, GitHub Actions').
 * @returns The exit status: 0 success, 2 usage or configuration error, 1 any other failure.
 *
 * @example A configuration error is found before anything is run or sent
 * ```ts
 * import { main } from "@equinixmetal/token-exchange/cli";
 * import assert from "node:assert/strict";
 *
 * const env = (name: string) =>
 *   name === "BUILDKITE_PLUGIN_TOKEN_EXCHANGE_TOKEN_ENDPOINT" ? "http://sts.example.com/token" : undefined;
 * assert.equal(await main([], env), 2); // plain http to a host that is not loopback
 * ```
 */
export async function main(
  args: readonly string[],
  env: (name: string) => string | undefined = (name) => Deno.env.get(name),
): Promise<number> {
  const fail = errorWriter(args);
  const status = await command(args, env, fail);
  // --format hook ends a failure with its status, which the hook reads instead of waiting for the
  // process to end.
  if (status !== 0 && fail !== say) console.log(`!exit ${status}`);
  return status;
}

async function command(args: readonly string[], env: Env, fail: (text: string) => void) {
  let command;
  try {
    command = parseCommandLine(args, env);
  } catch (error) {
    if (error instanceof UsageError) {
      fail(error.message);
    } else if (error instanceof Deno.errors.NotCapable) {
      fail(`Cannot read the environment (${error.message}): run with --allow-env`);
    } else {
      throw error;
    }
    return 2;
  }
  switch (command.kind) {
    case "help":
      console.log(helpText(VERSION));
      return 0;
    case "version":
      console.log(`token-exchange ${VERSION}`);
      return 0;
    case "run":
      return await run(command.config, env, fail);
  }
}

/** One exchange: the subject token, discovery if asked for, the exchange, and the output. */
async function run(config: CliConfig, env: Env, fail: (text: string) => void): Promise<number> {
  const debug = config.debug ? (line: string) => say(`debug: ${line}`) : undefined;
  const report = config.debug ? await loadReport() : undefined;
  // A loopback endpoint (or issuer, or token service) is reached directly, never through a proxy
  // from the environment; other hosts keep HTTPS_PROXY and NO_PROXY.
  using direct = directLoopbackFetch();
  // Its HTTP client is made now, while the hooks' agent call is still under way (about 10 ms).
  direct.prepare(config.tokenEndpoint ?? config.issuer!);
  const http: HttpOptions & HttpInternals = {
    timeout: config.timeout,
    retries: config.retries,
    onDebug: debug,
    fetch: direct.fetch,
    platformFetch: true,
  };
  let subjectToken: string | undefined;
  try {
    // --format hook: the hook does what it must while it waits for the agent now that Deno has
    // started, and starts `buildkite-agent redactor add` once the exchange is under way.
    if (config.format === "hook") console.log("ready");
    subjectToken = await getSubjectToken(config.source, http, env);
    if (config.format === "hook") console.log("exchanging");
    debug?.(report!.explain(report!.subjectTokenLabel(config.source), subjectToken));
    let tokenEndpoint = config.tokenEndpoint;
    if (tokenEndpoint === undefined) {
      const { discover } = await import("./_discovery.ts");
      const names = {
        tokenEndpoint: labelOf(config, "token-endpoint"),
        issuer: labelOf(config, "issuer"),
      };
      tokenEndpoint = await discover(config.issuer!, { ...http, names });
    }
    const result = await exchange({
      ...exchangeParameters(config),
      ...http,
      tokenEndpoint,
      subjectToken,
    });
    if (debug) {
      debug(report!.explain("Issued token", result.accessToken));
      const shown = (value: string | undefined) =>
        value === undefined ? "(none)" : summarise(value, [subjectToken!]);
      debug(
        `Response: issued_token_type=${shown(result.issuedTokenType)} token_type=${
          shown(result.tokenType)
        } expires_in=${result.expiresIn ?? "(none)"} scope=${shown(result.scope)}`,
      );
    }
    console.log(await output(config, result));
    return 0;
  } catch (error) {
    await failure(error, config, subjectToken, fail);
    return 1;
  }
}

/** Reports a failure: one line, the subject token's iss, sub and aud, and with --debug the stack. */
async function failure(
  error: unknown,
  config: CliConfig,
  subjectToken: string | undefined,
  fail: (text: string) => void,
): Promise<void> {
  const report = await loadReport();
  const secrets = [subjectToken, config.clientSecret].filter((s): s is string => !!s);
  let message: string;
  if (
    error instanceof TokenExchangeError || error instanceof SubjectTokenError ||
    error instanceof TypeError
  ) {
    message = `${error.message}${report.hint(error, config)}`;
  } else {
    message = `Unexpected error: ${error instanceof Error ? error.message : String(error)}`;
  }
  fail(maskSecrets(message, secrets));
  if (subjectToken !== undefined) {
    fail(report.identify(report.subjectTokenLabel(config.source), subjectToken));
  }
  if (config.debug && error instanceof Error && error.stack) {
    for (const line of maskSecrets(error.stack, secrets).split("\n")) say(`debug: ${line}`);
  }
}

if (import.meta.main) {
  Deno.exit(await main(Deno.args));
}
