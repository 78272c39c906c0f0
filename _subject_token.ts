// Where the CLI gets the subject token: buildkite-agent, GitHub Actions, GitLab, a variable, a file
// or stdin. Choosing the source from the options (a usage error when they do not fit together),
// and then getting the token from it. Unlike the library, this module uses Deno APIs.

import { type Env, type OptionValues, UsageError } from "./_cli_flags.ts";
import { type HttpOptions, sendWithRetries } from "./_http.ts";
import { decodeJsonObject } from "./_json.ts";
import { summarise } from "./_redact.ts";
import { parseSecureUrl } from "./_url.ts";
import { USER_AGENT } from "./_constants.ts";

/** Where the subject token comes from. */
export type SubjectTokenSource =
  | BuildkiteSource
  | { kind: "github-actions"; audience: string | undefined }
  | { kind: "gitlab"; variable: string }
  | { kind: "env"; variable: string }
  | { kind: "file"; path: string };

/** `buildkite-agent oidc request-token`, run here or by the hooks. */
export interface BuildkiteSource {
  kind: "buildkite";
  audience: string;
  lifetime: number | undefined;
  claims: string[];
  /** How the claims option is named in messages: `--claim` or `claims`. */
  claimsFrom?: string;
  /** The hooks ran the agent: its output is on stdin (see readAgentOutput). */
  stdin?: boolean;
  /** Claims the agent adds as AWS session tags (`--aws-session-tag`, the plugin's `aws-session-tags`). */
  awsSessionTags?: string[];
}

/** The audience of the CI system's OIDC token: `--audience`, or either of the plugin's spellings. */
function readAudience(options: OptionValues): string | undefined {
  const audience = options.string("audience");
  const buildkiteAudience = options.variable("BUILDKITE_AUDIENCE");
  if (
    !options.given("audience") && audience !== undefined && buildkiteAudience !== undefined &&
    audience.value !== buildkiteAudience
  ) {
    throw new UsageError(
      `audience is "${audience.value}" but buildkite-audience is "${buildkiteAudience}": set only one of them`,
    );
  }
  return audience?.value ?? buildkiteAudience;
}

function readLifetime(options: OptionValues): number | undefined {
  const source = options.string("lifetime");
  if (source === undefined) return undefined;
  // No leading zero: the hooks hand the value to the agent as it is written, and the agent would
  // read 010 as octal.
  if (!/^[1-9]\d{0,8}$/.test(source.value)) {
    throw new UsageError(
      `${source.from} is "${source.value}": use a whole number of seconds above 0`,
    );
  }
  return Number(source.value);
}

/**
 * Chooses where the subject token comes from: `--subject-token-source`, `--subject-token-env` and
 * `--subject-token-file`, with the audience, lifetime and claims of a Buildkite OIDC token.
 *
 * @throws {UsageError} When the options do not fit together, or a value is malformed.
 */
export function chooseSubjectTokenSource(options: OptionValues): SubjectTokenSource {
  const audience = readAudience(options);
  const lifetime = readLifetime(options);
  const claims = options.list("claim");
  const kind = options.oneOf(
    "subject-token-source",
    ["buildkite", "github-actions", "gitlab"] as const,
    "buildkite",
  );
  const sourceGiven = options.given("subject-token-source");
  const tokenEnv = options.envName("subject-token-env", "the token", "MY_TOKEN")?.value;
  const tokenFile = options.string("subject-token-file")?.value;
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
  const buildkite: BuildkiteSource = {
    kind: "buildkite",
    audience: audience ?? "buildkite",
    lifetime,
    claims: claims.value,
    claimsFrom: claims.from,
  };
  let source: SubjectTokenSource;
  if (kind === "gitlab") {
    if (tokenEnv === undefined) {
      throw new UsageError(
        "--subject-token-source gitlab needs --subject-token-env NAME, the variable your id_tokens: block defines",
      );
    }
    source = { kind: "gitlab", variable: tokenEnv };
  } else if (agentOnStdin) {
    source = { ...buildkite, stdin: true };
  } else if (tokenEnv !== undefined) {
    source = { kind: "env", variable: tokenEnv };
  } else if (tokenFile !== undefined) {
    if (tokenFile === "") {
      throw new UsageError("--subject-token-file is empty: give a path, or - for stdin");
    }
    source = { kind: "file", path: tokenFile };
  } else {
    source = kind === "github-actions" ? { kind: "github-actions", audience } : buildkite;
  }
  refuseBuildkiteOnlyFlags(options, source);
  return source;
}

/** Flags that only the Buildkite source can use are an error elsewhere, not silently dropped. */
function refuseBuildkiteOnlyFlags(options: OptionValues, source: SubjectTokenSource): void {
  if (source.kind === "buildkite") return;
  const buildkiteOnly = [
    "lifetime",
    "claim",
    ...(source.kind === "github-actions" ? [] : ["audience"]),
  ];
  for (const name of buildkiteOnly) {
    if (options.given(name)) {
      throw new UsageError(
        `--${name} applies only to a token from buildkite-agent, not to --subject-token-${
          source.kind === "file" ? "file" : source.kind === "env" ? "env" : "source " + source.kind
        }`,
      );
    }
  }
}

/** The subject token could not be had: exit status 1. */
export class SubjectTokenError extends Error {
  /** The name of the error class. */
  override name = "SubjectTokenError";
}

/** How long buildkite-agent may take, including its own retries. */
const AGENT_TIMEOUT_MS = 60_000;

function nonEmpty(token: string | undefined, what: string, fix: string): string {
  const trimmed = token?.trim() ?? "";
  if (trimmed === "") throw new SubjectTokenError(`${what} is empty: ${fix}`);
  return trimmed;
}

/** The arguments for `buildkite-agent oidc request-token`. */
export function buildkiteAgentArgs(source: BuildkiteSource): string[] {
  const args = ["oidc", "request-token", "--audience", source.audience];
  if (source.lifetime !== undefined) args.push("--lifetime", String(source.lifetime));
  for (const claim of source.claims) args.push("--claim", claim);
  if (source.awsSessionTags?.length) {
    args.push("--aws-session-tag", source.awsSessionTags.join(","));
  }
  return args;
}

/** The line the hooks put on stdin, after the agent's stderr, when the agent failed. */
const AGENT_FAILED = /(?:^|\n)!buildkite-agent-failed (\d+)\n/;

/**
 * The token `buildkite-agent oidc request-token` printed, as the hooks hand it over on stdin: the
 * token, or when the agent failed a line `!buildkite-agent-failed STATUS` and its error output.
 */
export function readAgentOutput(text: string, source: BuildkiteSource): string {
  const failed = AGENT_FAILED.exec(text);
  if (failed === null) {
    return nonEmpty(
      text,
      "The token from buildkite-agent oidc request-token",
      "check the agent can reach Buildkite",
    );
  }
  const status = Number(failed[1]);
  if (status === 127) {
    throw new SubjectTokenError("buildkite-agent is not on PATH: run inside a Buildkite job");
  }
  const stderr = text.slice(failed.index + failed[0].length);
  throw agentFailure(`exit status ${status}`, stderr, text.slice(0, failed.index), source);
}

function agentFailure(
  status: string,
  stderr: string,
  stdout: string,
  source: BuildkiteSource,
): SubjectTokenError {
  const lines = stderr.trim().split("\n").filter((l) => l.trim());
  const detail = lines.length > 0
    ? summarise(lines.slice(-2).join(" "), [stdout.trim()], 300)
    : "no error output";
  const hint = source.claims.length > 0
    ? ` (${
      source.claimsFrom ?? "claims"
    } needs buildkite-agent 3.44 or later; check the claim names)`
    : "";
  return new SubjectTokenError(
    `buildkite-agent oidc request-token failed (${status}): ${detail}${hint}`,
  );
}

async function fromBuildkiteAgent(
  source: BuildkiteSource,
  debug: ((line: string) => void) | undefined,
): Promise<string> {
  if (source.stdin) return readAgentOutput(await readStdin(), source);
  const args = buildkiteAgentArgs(source);
  debug?.(`Requesting the subject token: buildkite-agent ${args.join(" ")}`);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command("buildkite-agent", {
      args,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: AbortSignal.timeout(AGENT_TIMEOUT_MS),
    }).output();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) {
      throw new SubjectTokenError(
        "buildkite-agent is not on PATH: run inside a Buildkite job, or pass the token with --subject-token-env or --subject-token-file",
      );
    }
    if (error instanceof Deno.errors.NotCapable) {
      throw new SubjectTokenError(
        "Deno may not run buildkite-agent: add --allow-run=buildkite-agent, or pass the token with --subject-token-env or --subject-token-file",
      );
    }
    throw new SubjectTokenError(
      `Cannot run buildkite-agent: ${
        summarise(error instanceof Error ? error.message : String(error))
      }`,
    );
  }
  const stdout = new TextDecoder().decode(output.stdout);
  if (!output.success) {
    const status = output.signal ? `signal ${output.signal}` : `exit status ${output.code}`;
    throw agentFailure(status, new TextDecoder().decode(output.stderr), stdout, source);
  }
  return nonEmpty(
    stdout,
    "The token from buildkite-agent oidc request-token",
    "check the agent can reach Buildkite",
  );
}

async function fromGitHubActions(
  audience: string | undefined,
  http: HttpOptions,
  env: Env,
): Promise<string> {
  const requestUrl = env("ACTIONS_ID_TOKEN_REQUEST_URL");
  const requestToken = env("ACTIONS_ID_TOKEN_REQUEST_TOKEN");
  if (!requestUrl || !requestToken) {
    throw new SubjectTokenError(
      "ACTIONS_ID_TOKEN_REQUEST_URL and ACTIONS_ID_TOKEN_REQUEST_TOKEN are not set: give the workflow job `permissions: id-token: write`",
    );
  }
  let url: URL;
  try {
    url = parseSecureUrl(requestUrl, "ACTIONS_ID_TOKEN_REQUEST_URL");
  } catch (error) {
    throw new SubjectTokenError((error as Error).message);
  }
  if (audience !== undefined) url.searchParams.set("audience", audience);
  http.onDebug?.(
    `Requesting the subject token from GitHub Actions${
      audience ? ` for audience "${audience}"` : ""
    }`,
  );
  const { response } = await sendWithRetries(
    url,
    {
      method: "GET",
      headers: {
        authorization: `Bearer ${requestToken}`,
        accept: "application/json",
        "user-agent": USER_AGENT,
      },
    },
    "GitHub Actions token service",
    http,
  );
  const text = new TextDecoder().decode(response.body);
  if (response.status !== 200) {
    throw new SubjectTokenError(
      `GitHub Actions token service answered HTTP ${response.status}: "${
        summarise(text, [requestToken])
      }"`,
    );
  }
  const value = decodeJsonObject(text)?.value;
  if (typeof value !== "string") {
    throw new SubjectTokenError('GitHub Actions token service answered without a string "value"');
  }
  return nonEmpty(value, "The GitHub Actions ID token", "check the workflow's id-token permission");
}

async function readStdin(): Promise<string> {
  return await new Response(Deno.stdin.readable).text();
}

/**
 * Gets the subject token from its source.
 *
 * @param source Where it comes from.
 * @param http How requests are sent (the GitHub Actions token service).
 * @param env Reads a variable: the GitHub Actions, GitLab or `--subject-token-env` one.
 * @throws {SubjectTokenError} When it cannot be had.
 */
export async function getSubjectToken(
  source: SubjectTokenSource,
  http: HttpOptions,
  env: Env,
): Promise<string> {
  switch (source.kind) {
    case "buildkite":
      return await fromBuildkiteAgent(source, http.onDebug);
    case "github-actions":
      return await fromGitHubActions(source.audience, http, env);
    case "gitlab": {
      const value = env(source.variable);
      if (value === undefined || value.trim() === "") {
        throw new SubjectTokenError(
          `GitLab ID token variable "${source.variable}" is not set: add \`id_tokens: { ${source.variable}: { aud: "<audience>" } }\` to the job in .gitlab-ci.yml`,
        );
      }
      return value.trim();
    }
    case "env":
      return nonEmpty(
        env(source.variable),
        `Environment variable "${source.variable}" (--subject-token-env)`,
        "set it to the subject token",
      );
    case "file": {
      if (source.path === "-") {
        return nonEmpty(await readStdin(), "The subject token on stdin", "pipe the token in");
      }
      let text: string;
      try {
        text = await Deno.readTextFile(source.path);
      } catch (error) {
        const reason = error instanceof Deno.errors.NotFound
          ? "no such file"
          : summarise(error instanceof Error ? error.message : String(error));
        throw new SubjectTokenError(
          `Cannot read the subject token file "${source.path}" (--subject-token-file): ${reason}`,
        );
      }
      return nonEmpty(text, `The subject token file "${source.path}"`, "write the token to it");
    }
  }
}
