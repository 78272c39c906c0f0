// A stand-in for AWS STS on 127.0.0.1 (the Query API: AssumeRoleWithWebIdentity and
// GetCallerIdentity), and a driver that runs the real AWS SDK for JavaScript v3 from npm against it
// with the variables the plugin exports, the way the AWS CLI, SDKs and Terraform use them.

import { type ClientRun, runClientProcess } from "./_client_process.ts";

const STS_NAMESPACE = "https://sts.amazonaws.com/doc/2011-06-15/";
/** The account every assumed role lives in. */
export const STANDIN_ACCOUNT = "123456789012";
/** What AWS accepts as a role session name. */
export const ROLE_SESSION_NAME = /^[\w+=,.@-]{2,64}$/;
const ROLE_ARN = /^arn:aws[\w-]*:iam::(\d{12}):role\/(?:[\w+=,.@-]+\/)*([\w+=,.@-]{1,64})$/;

/** One AssumeRoleWithWebIdentity request as the stand-in saw it. */
export interface AssumeRoleRequest {
  roleArn: string | null;
  roleSessionName: string | null;
  webIdentityToken: string | null;
  /** Every form field in order. */
  form: [string, string][];
  /** The access key ID it issued, or the error it answered with (`Code: message`). */
  issued?: string;
  error?: string;
}

/** One GetCallerIdentity request as the stand-in saw it. */
export interface CallerIdentityRequest {
  /** From the SigV4 Authorization header's Credential= scope. */
  accessKeyId: string | null;
  /** The region of that scope. */
  region: string | null;
  /** The Arn it answered with, or the error it answered with. */
  arn?: string;
  error?: string;
}

export interface AwsStandInOptions {
  /**
   * Lifetime of the credentials it issues (`Expiration`). Short, so that a later round of
   * `runAwsClient` finds them expired and assumes the role again; over 10 s, the SDK keeps using
   * them (no refresh within a run). @default 2
   */
  lifetimeSeconds?: number;
  /**
   * Judges each web identity token: a string is the reason to refuse it (`400
   * InvalidIdentityToken`), as STS does for an expired or untrusted token. @default accepts all
   */
  checkWebIdentityToken?: (token: string) => string | undefined;
  /**
   * Whether the role's trust policy refuses the token (`403 AccessDenied`, "Not authorized to
   * perform sts:AssumeRoleWithWebIdentity"), as STS answers when the provider is known but the
   * policy's conditions do not match. @default accepts all
   */
  denyAccess?: (token: string) => boolean;
}

export interface AwsStandIn extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`, for AWS_ENDPOINT_URL_STS. */
  url: string;
  assumeRole: AssumeRoleRequest[];
  callerIdentity: CallerIdentityRequest[];
  /** Every other request (method, path and Action), in order: none is expected. */
  stray: string[];
  close(): Promise<void>;
}

function xml(text: string): string {
  return text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;")
    .replaceAll('"', "&quot;");
}

function stsError(status: number, code: string, message: string): Response {
  return new Response(
    `<ErrorResponse xmlns="${STS_NAMESPACE}"><Error><Type>Sender</Type><Code>${code}</Code>` +
      `<Message>${xml(message)}</Message></Error><RequestId>${crypto.randomUUID()}</RequestId>` +
      `</ErrorResponse>`,
    { status, headers: { "content-type": "text/xml" } },
  );
}

function stsResult(action: string, result: string): Response {
  return new Response(
    `<${action}Response xmlns="${STS_NAMESPACE}"><${action}Result>${result}</${action}Result>` +
      `<ResponseMetadata><RequestId>${crypto.randomUUID()}</RequestId></ResponseMetadata>` +
      `</${action}Response>`,
    { headers: { "content-type": "text/xml" } },
  );
}

function randomText(length: number, alphabet: string): string {
  const bytes = crypto.getRandomValues(new Uint8Array(length));
  return [...bytes].map((byte) => alphabet[byte % alphabet.length]).join("");
}

const UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
const BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/** The `sub` claim of a JWT, if it is one. */
function subjectOf(token: string): string | undefined {
  try {
    const payload = token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/");
    const sub = JSON.parse(atob(payload)).sub;
    return typeof sub === "string" ? sub : undefined;
  } catch {
    return undefined;
  }
}

/** Answers GetCallerIdentity for the credentials STS issued, recording it in `callerIdentity`. */
function identify(
  headers: Headers,
  issued: ReadonlyMap<string, { sessionToken: string; expires: number; arn: string }>,
  callerIdentity: CallerIdentityRequest[],
): Response {
  const scope = headers.get("authorization")?.match(
    /^AWS4-HMAC-SHA256 Credential=([A-Z0-9]+)\/\d{8}\/([a-z0-9-]+)\/sts\/aws4_request,/,
  );
  const record: CallerIdentityRequest = {
    accessKeyId: scope?.[1] ?? null,
    region: scope?.[2] ?? null,
  };
  callerIdentity.push(record);
  const refuse = (status: number, code: string, message: string) => {
    record.error = `${code}: ${message}`;
    return stsError(status, code, message);
  };
  const credentials = issued.get(record.accessKeyId ?? "");
  if (!scope || credentials === undefined) {
    return refuse(403, "InvalidClientTokenId", "The security token included is invalid");
  }
  if (headers.get("x-amz-security-token") !== credentials.sessionToken) {
    return refuse(403, "InvalidClientTokenId", "The security token included is invalid");
  }
  if (Date.now() > credentials.expires) {
    return refuse(403, "ExpiredToken", "The security token included in the request is expired");
  }
  record.arn = credentials.arn;
  return stsResult(
    "GetCallerIdentity",
    `<Arn>${xml(credentials.arn)}</Arn><UserId>AROA:${xml(credentials.arn.split("/").pop()!)}` +
      `</UserId><Account>${STANDIN_ACCOUNT}</Account>`,
  );
}

/** Starts the STS stand-in on 127.0.0.1 (port 0). */
export function startAwsStandIn(options: AwsStandInOptions = {}): AwsStandIn {
  const {
    lifetimeSeconds = 2,
    checkWebIdentityToken = () => undefined,
    denyAccess = () => false,
  } = options;
  const assumeRole: AssumeRoleRequest[] = [];
  const callerIdentity: CallerIdentityRequest[] = [];
  const stray: string[] = [];
  const issued = new Map<string, { sessionToken: string; expires: number; arn: string }>();

  const assume = (form: URLSearchParams): Response => {
    const record: AssumeRoleRequest = {
      roleArn: form.get("RoleArn"),
      roleSessionName: form.get("RoleSessionName"),
      webIdentityToken: form.get("WebIdentityToken"),
      form: [...form],
    };
    assumeRole.push(record);
    const refuse = (code: string, message: string) => {
      record.error = `${code}: ${message}`;
      return stsError(400, code, message);
    };
    const role = record.roleArn?.match(ROLE_ARN);
    if (!role) return refuse("ValidationError", `Invalid RoleArn "${record.roleArn}"`);
    if (!ROLE_SESSION_NAME.test(record.roleSessionName ?? "")) {
      return refuse(
        "ValidationError",
        `1 validation error detected: Value '${record.roleSessionName}' at 'roleSessionName' ` +
          "failed to satisfy constraint: Member must satisfy regular expression pattern: " +
          "[\\w+=,.@-]*",
      );
    }
    const token = record.webIdentityToken ?? "";
    if (token.length < 4 || token.length > 20_000) {
      return refuse("ValidationError", "WebIdentityToken must be 4 to 20000 characters");
    }
    const duration = form.get("DurationSeconds");
    if (duration !== null && !(/^\d+$/.test(duration) && +duration >= 900 && +duration <= 43_200)) {
      return refuse("ValidationError", `Invalid DurationSeconds "${duration}"`);
    }
    const reason = checkWebIdentityToken(token);
    if (reason !== undefined) return refuse("InvalidIdentityToken", reason);
    if (denyAccess(token)) {
      record.error = "AccessDenied: Not authorized to perform sts:AssumeRoleWithWebIdentity";
      return stsError(
        403,
        "AccessDenied",
        "Not authorized to perform sts:AssumeRoleWithWebIdentity",
      );
    }
    const accessKeyId = `ASIA${randomText(16, UPPER)}`;
    const sessionToken = randomText(120, BASE64);
    const expires = Date.now() + lifetimeSeconds * 1000;
    const arn = `arn:aws:sts::${role[1]}:assumed-role/${role[2]}/${record.roleSessionName}`;
    issued.set(accessKeyId, { sessionToken, expires, arn });
    record.issued = accessKeyId;
    return stsResult(
      "AssumeRoleWithWebIdentity",
      `<Credentials><AccessKeyId>${accessKeyId}</AccessKeyId>` +
        `<SecretAccessKey>${randomText(40, BASE64)}</SecretAccessKey>` +
        `<SessionToken>${sessionToken}</SessionToken>` +
        `<Expiration>${new Date(expires).toISOString()}</Expiration></Credentials>` +
        `<SubjectFromWebIdentityToken>${xml(subjectOf(token) ?? "unknown")}` +
        `</SubjectFromWebIdentityToken>` +
        `<AssumedRoleUser><Arn>${xml(arn)}</Arn>` +
        `<AssumedRoleId>AROA${randomText(17, UPPER)}:${xml(record.roleSessionName!)}` +
        `</AssumedRoleId></AssumedRoleUser>` +
        `<Provider>agent.buildkite.com</Provider><Audience>sts.amazonaws.com</Audience>`,
    );
  };

  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const form = new URLSearchParams(await request.text());
      const action = form.get("Action");
      const { pathname } = new URL(request.url);
      const isForm = request.headers.get("content-type")?.startsWith(
        "application/x-www-form-urlencoded",
      );
      if (request.method === "POST" && pathname === "/" && isForm) {
        if (form.get("Version") !== "2011-06-15") {
          return stsError(400, "InvalidParameterValue", "Unknown Version");
        }
        if (action === "AssumeRoleWithWebIdentity") return assume(form);
        if (action === "GetCallerIdentity") {
          return identify(request.headers, issued, callerIdentity);
        }
      }
      stray.push(`${request.method} ${pathname} ${action}`);
      return stsError(400, "InvalidAction", `Could not find operation ${action}`);
    },
  );
  const url = `http://127.0.0.1:${server.addr.port}`;
  const close = async () => {
    if (!controller.signal.aborted) controller.abort();
    await server.finished;
  };
  return { url, assumeRole, callerIdentity, stray, close, [Symbol.asyncDispose]: close };
}

/** One round of the AWS client: the credentials it got and the identity STS saw, or its error. */
export interface AwsRound {
  accessKeyId?: string;
  /** RFC 3339 */
  expiration?: string;
  /** GetCallerIdentity's Arn: `arn:aws:sts::<account>:assumed-role/<role>/<session name>` */
  arn?: string;
  error?: string;
  stack?: string;
}

/** What the AWS client did and what the stand-in saw while it ran. */
export interface AwsClientResult extends ClientRun<AwsRound> {
  /** The WebIdentityToken of each AssumeRoleWithWebIdentity made during the run, in order. */
  webIdentityTokens: (string | null)[];
  assumeRole: AssumeRoleRequest[];
  callerIdentity: CallerIdentityRequest[];
}

export interface AwsClientOptions {
  /** How many rounds, one credential chain throughout. @default 2 */
  rounds?: number;
  /** Runs before each round after the first (say, rewrite or wait for the token file). */
  between?: (round: number) => void | Promise<void>;
  /** Files the client may read besides AWS_WEB_IDENTITY_TOKEN_FILE. */
  read?: string[];
}

/**
 * Runs the AWS SDK for JavaScript v3 (`fromNodeProviderChain()`, then `GetCallerIdentity`) in a
 * subprocess whose environment is ENV (AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE,
 * AWS_ROLE_SESSION_NAME, as the hook exported them) plus AWS_ENDPOINT_URL_STS=the stand-in,
 * AWS_REGION (us-east-1 unless ENV has one), IMDS disabled and no config or credentials files;
 * permitted only 127.0.0.1, the environment, reading the token file, and the OS release (the
 * SDK's User-Agent).
 */
export async function runAwsClient(
  aws: AwsStandIn,
  env: Record<string, string>,
  options: AwsClientOptions = {},
): Promise<AwsClientResult> {
  const read = ["/dev/null", ...options.read ?? []];
  if (env.AWS_WEB_IDENTITY_TOKEN_FILE) read.push(env.AWS_WEB_IDENTITY_TOKEN_FILE);
  const assumeBefore = aws.assumeRole.length;
  const identityBefore = aws.callerIdentity.length;
  const run = await runClientProcess<AwsRound>(new URL("./_aws_client.ts", import.meta.url), {
    permissions: [
      "--allow-net=127.0.0.1",
      "--allow-env",
      `--allow-read=${read.join(",")}`,
      "--allow-sys=osRelease",
    ],
    env: {
      AWS_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
      AWS_CONFIG_FILE: "/dev/null",
      AWS_SHARED_CREDENTIALS_FILE: "/dev/null",
      ...env,
      AWS_ENDPOINT_URL_STS: aws.url,
    },
    rounds: options.rounds,
    between: options.between,
  });
  const assumeRole = aws.assumeRole.slice(assumeBefore);
  return {
    ...run,
    webIdentityTokens: assumeRole.map((request) => request.webIdentityToken),
    assumeRole,
    callerIdentity: aws.callerIdentity.slice(identityBefore),
  };
}
