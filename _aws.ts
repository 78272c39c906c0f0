// AWS STS's AssumeRoleWithWebIdentity, which the plugin calls once in the hook with `aws-role-arn`,
// so that a role whose trust policy does not match fails the job there, with AWS's own code and
// message: the Query API (a form POST, unsigned, as this action allows) and its XML answer, read
// for the few elements it has. Web-standard APIs only.

import { USER_AGENT } from "./_constants.ts";
import { HttpStatusError, InvalidResponseError } from "./_errors.ts";
import { type HttpInternals, type HttpOptions, sendWithRetries } from "./_http.ts";
import { summarise } from "./_redact.ts";
import { issuedTokenProblem } from "./_response.ts";

/** What the hook asks AWS STS for. */
export interface AssumeRoleRequest {
  /** STS's Query API endpoint, such as `https://sts.us-east-1.amazonaws.com/`. */
  stsUrl: URL;
  roleArn: string;
  sessionName: string;
  /** `DurationSeconds`, 900 to 43200; STS's default (3600) when undefined. */
  durationSeconds: number | undefined;
  /** The OIDC token. */
  webIdentityToken: string;
}

/** The temporary credentials STS issued, and the role session they are for. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken: string;
  /** When they expire (RFC 3339, as STS wrote it). */
  expiration: string;
  /** `arn:aws:sts::<account>:assumed-role/<role>/<session name>` */
  assumedRoleArn: string;
}

const WHAT = "AWS STS";
/** An Expiration as STS writes it (exported as AWS_CREDENTIAL_EXPIRATION). */
const RFC3339 = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?Z$/;
/** An assumed role session's ARN (shown in the log). */
const ASSUMED_ROLE = /^arn:aws[a-z-]*:sts::\d{12}:assumed-role\/[\w+=,.@/-]{1,200}$/;

/** What to change for each code STS answers with, where its message alone does not say. */
function hintFor(code: string, message: string): string {
  switch (code) {
    case "AccessDenied":
    case "InvalidIdentityToken":
    case "IDPRejectedClaim":
      return "; check that the account has an IAM OIDC provider for the token's iss with its aud as an audience, and that the role's trust policy accepts the iss, sub and aud below";
    case "ExpiredTokenException":
      return "; the OIDC token expired before AWS checked it: check this agent's clock, or raise lifetime";
    case "RegionDisabledException":
      return "; activate STS in that region, or set aws-region to another";
  }
  return code === "ValidationError" && /duration/i.test(message)
    ? "; set aws-session-duration to at most the role's maximum session duration, or raise that"
    : "";
}

/**
 * The text of the first `<name>` element of an XML document (entities decoded), or `undefined`. STS
 * answers are small and flat enough to read this way; nothing else of the XML is trusted.
 */
export function xmlElement(xml: string, name: string): string | undefined {
  const match = new RegExp(`<${name}>([^<]*)</${name}>`).exec(xml);
  if (match === null) return undefined;
  return match[1]!.replace(/&(lt|gt|quot|apos|amp|#\d{1,7}|#x[0-9a-fA-F]{1,6});/g, (_, entity) => {
    switch (entity) {
      case "lt":
        return "<";
      case "gt":
        return ">";
      case "quot":
        return '"';
      case "apos":
        return "'";
      case "amp":
        return "&";
    }
    const code = entity[1] === "x" ? parseInt(entity.slice(2), 16) : Number(entity.slice(1));
    return code <= 0x10ffff ? String.fromCodePoint(code) : "\ufffd";
  });
}

/**
 * Calls AssumeRoleWithWebIdentity.
 *
 * @param request The role, the session and the OIDC token.
 * @param http How to send it (timeout, retries, fetch).
 * @returns The credentials.
 * @throws {HttpStatusError} When STS refuses, with its code and message (and what to change).
 * @throws {InvalidResponseError} When the answer is not what STS answers.
 * @throws {TokenExchangeError} When STS cannot be reached or does not answer in time.
 */
export async function assumeRoleWithWebIdentity(
  request: AssumeRoleRequest,
  http: HttpOptions & HttpInternals = {},
): Promise<AwsCredentials> {
  const body = new URLSearchParams({
    Action: "AssumeRoleWithWebIdentity",
    Version: "2011-06-15",
    RoleArn: request.roleArn,
    RoleSessionName: request.sessionName,
    WebIdentityToken: request.webIdentityToken,
  });
  if (request.durationSeconds !== undefined) {
    body.set("DurationSeconds", String(request.durationSeconds));
  }
  http.onDebug?.(
    `AWS STS: AssumeRoleWithWebIdentity at ${request.stsUrl.href} for ${request.roleArn} as ${request.sessionName}${
      request.durationSeconds === undefined ? "" : ` for ${request.durationSeconds} s`
    }`,
  );
  const { response, attempts } = await sendWithRetries(
    request.stsUrl,
    {
      method: "POST",
      headers: {
        "content-type": "application/x-www-form-urlencoded; charset=utf-8",
        "user-agent": USER_AGENT,
      },
      body: body.toString(),
    },
    WHAT,
    http,
  );
  const secrets = [request.webIdentityToken];
  const text = new TextDecoder().decode(response.body);
  const type = response.headers.get("content-type")?.split(";")[0]?.trim() || undefined;
  const meta = { status: response.status, attempts };
  if (response.status !== 200) {
    const code = xmlElement(text, "Code");
    if (code !== undefined) {
      const message = xmlElement(text, "Message") ?? "";
      throw new HttpStatusError(
        `${WHAT} refused AssumeRoleWithWebIdentity for ${request.roleArn}: HTTP ${response.status}, ${
          summarise(code, secrets, 100)
        }: "${summarise(message, secrets, 500)}"${hintFor(code, message)}`,
        response.status,
        type,
        summarise(text, secrets),
        meta,
      );
    }
    const excerpt = summarise(text, secrets);
    throw new HttpStatusError(
      `${WHAT} answered HTTP ${response.status} (${type ?? "no content type"})${
        excerpt ? `: "${excerpt}"` : " with an empty body"
      }: check AWS_ENDPOINT_URL_STS or aws-region`,
      response.status,
      type,
      excerpt,
      meta,
    );
  }
  const credentials = readCredentials(text);
  const problem = credentials === undefined
    ? "without the credentials AssumeRoleWithWebIdentity returns"
    : !/^[A-Z0-9]{16,128}$/.test(credentials.accessKeyId)
    ? "with an AccessKeyId that is not one"
    : !RFC3339.test(credentials.expiration)
    ? "with an Expiration that is not a time"
    : !ASSUMED_ROLE.test(credentials.assumedRoleArn)
    ? "with an AssumedRoleUser Arn that is not an assumed role's"
    : ([
      ["SecretAccessKey", credentials.secretAccessKey],
      ["SessionToken", credentials.sessionToken],
    ] as const).map(([name, value]) => {
      const why = issuedTokenProblem(value);
      return why === undefined ? undefined : `with a ${name} that ${why}`;
    }).find((why) => why !== undefined);
  if (problem !== undefined || credentials === undefined) {
    // A body with credentials in it is never quoted.
    const quoted = credentials === undefined ? ` ("${summarise(text, secrets)}")` : "";
    throw new InvalidResponseError(`${WHAT} answered HTTP 200 ${problem}${quoted}`, meta);
  }
  return credentials;
}

function readCredentials(text: string): AwsCredentials | undefined {
  const section = (name: string) => {
    const match = new RegExp(`<${name}>([^]*?)</${name}>`).exec(text);
    return match?.[1] ?? "";
  };
  const credentials = section("Credentials");
  const field = (name: string) => xmlElement(credentials, name);
  const accessKeyId = field("AccessKeyId");
  const secretAccessKey = field("SecretAccessKey");
  const sessionToken = field("SessionToken");
  const expiration = field("Expiration");
  const assumedRoleArn = xmlElement(section("AssumedRoleUser"), "Arn");
  if (
    accessKeyId === undefined || secretAccessKey === undefined || sessionToken === undefined ||
    expiration === undefined || assumedRoleArn === undefined
  ) {
    return undefined;
  }
  return { accessKeyId, secretAccessKey, sessionToken, expiration, assumedRoleArn };
}
