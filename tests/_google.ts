// Stand-ins for Google's Security Token Service and IAM Credentials API on 127.0.0.1, and a driver
// that runs the real google-auth-library from npm against them with an `external_account`
// credentials file, the way gcloud, Terraform and Google's client libraries use one.
//
// One server answers both APIs (and any stray request, such as one to a GCE metadata server, which
// it records and refuses):
//   POST /v1/token  RFC 8693 token exchange as Google's STS does it
//   POST /v1/projects/-/serviceAccounts/{email}:generateAccessToken  with the STS token as Bearer

import { type ClientRun, runClientProcess } from "./_client_process.ts";

export const TOKEN_EXCHANGE_GRANT = "urn:ietf:params:oauth:grant-type:token-exchange";
export const ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token";
/** The subject token types Google's STS accepts. */
export const STS_SUBJECT_TOKEN_TYPES: readonly string[] = [
  "urn:ietf:params:oauth:token-type:jwt",
  "urn:ietf:params:oauth:token-type:id_token",
  "urn:ietf:params:oauth:token-type:saml2",
  "urn:ietf:params:aws:token-type:aws4_request",
];

/** One token exchange request as the STS stand-in saw it. */
export interface StsRequest {
  grantType: string | null;
  subjectToken: string | null;
  subjectTokenType: string | null;
  audience: string | null;
  scope: string | null;
  requestedTokenType: string | null;
  /** Every form field in order. */
  form: [string, string][];
  /** The access token it issued, or the error it answered with. */
  issued?: string;
  error?: string;
}

/** One generateAccessToken request as the IAM Credentials stand-in saw it. */
export interface IamRequest {
  /** The `{email}` part of the path. */
  serviceAccount: string;
  /** The Bearer token it was sent with. */
  bearer: string | null;
  /** The request body as sent. */
  body: unknown;
  /** The service account token it issued, or the error it answered with. */
  issued?: string;
  error?: string;
}

export interface GoogleStandInOptions {
  /**
   * Lifetime of every token the stand-ins issue (STS `expires_in`; IAM `expireTime`, at most the
   * lifetime asked for). Under 300 s google-auth-library refreshes before every use, which makes
   * each round of `runGoogleClient` read the subject token file again. @default 60
   */
  lifetimeSeconds?: number;
  /**
   * Judges each subject token: a string is the reason to refuse it (`400 invalid_grant`), as the
   * STS does for an expired or untrusted token. @default accepts every non-empty token
   */
  checkSubjectToken?: (subjectToken: string) => string | undefined;
  /**
   * Whether IAM refuses to let the federated identity impersonate the service account (`403
   * PERMISSION_DENIED`), as it does without roles/iam.workloadIdentityUser. @default allows all
   */
  denyImpersonation?: (serviceAccount: string) => boolean;
}

export interface GoogleStandIns extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** `<origin>/v1/token`, the credentials file's `token_url`. */
  stsUrl: string;
  /** The credentials file's `service_account_impersonation_url` for EMAIL. */
  impersonationUrl(email: string): string;
  /** `127.0.0.1:<port>`, for GCE_METADATA_HOST, so a metadata request is recorded, never sent out. */
  host: string;
  /** Every token exchange, in order. */
  sts: StsRequest[];
  /** Every impersonation request, in order. */
  iam: IamRequest[];
  /** Every request that was neither (method and path), in order: none is expected. */
  stray: string[];
  close(): Promise<void>;
}

function googleError(status: number, message: string): Response {
  const statuses: Record<number, string> = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
  };
  return Response.json({ error: { code: status, message, status: statuses[status] } }, { status });
}

/** What the stand-ins keep between requests: their options, what they saw, what they issued. */
interface StandInState {
  lifetimeSeconds: number;
  checkSubjectToken: (subjectToken: string) => string | undefined;
  denyImpersonation: (serviceAccount: string) => boolean;
  sts: StsRequest[];
  iam: IamRequest[];
  stray: string[];
  /** The access tokens the STS issued: the only Bearer tokens IAM takes. */
  stsTokens: Set<string>;
  /** How many tokens have been issued, so each one is distinct and tells its order. */
  issuedCount: number;
}

/** A new token: PREFIX, its number in issuing order, and a random part. */
function mint(state: StandInState, prefix: string): string {
  return `${prefix}-${++state.issuedCount}-${crypto.randomUUID().replaceAll("-", "")}`;
}

/** Answers a token exchange as Google's STS does, recording it in `state.sts`. */
async function exchange(state: StandInState, request: Request): Promise<Response> {
  const form = new URLSearchParams(await request.text());
  const record: StsRequest = {
    grantType: form.get("grant_type"),
    subjectToken: form.get("subject_token"),
    subjectTokenType: form.get("subject_token_type"),
    audience: form.get("audience"),
    scope: form.get("scope"),
    requestedTokenType: form.get("requested_token_type"),
    form: [...form],
  };
  state.sts.push(record);
  const refuse = (error: string, description: string) => {
    record.error = `${error}: ${description}`;
    return Response.json({ error, error_description: description }, { status: 400 });
  };
  const type = request.headers.get("content-type") ?? "";
  if (!type.startsWith("application/x-www-form-urlencoded")) {
    return refuse("invalid_request", `Unsupported content type "${type}"`);
  }
  if (record.grantType !== TOKEN_EXCHANGE_GRANT) {
    return refuse("unsupported_grant_type", `Unsupported grant_type "${record.grantType}"`);
  }
  if (!record.audience) return refuse("invalid_request", "Missing audience");
  if (!STS_SUBJECT_TOKEN_TYPES.includes(record.subjectTokenType ?? "")) {
    return refuse("invalid_request", `Invalid subject_token_type "${record.subjectTokenType}"`);
  }
  if (record.requestedTokenType !== ACCESS_TOKEN_TYPE) {
    return refuse(
      "invalid_request",
      `Invalid requested_token_type "${record.requestedTokenType}"`,
    );
  }
  if (!record.subjectToken) return refuse("invalid_request", "Missing subject_token");
  const reason = state.checkSubjectToken(record.subjectToken);
  if (reason !== undefined) return refuse("invalid_grant", reason);
  record.issued = mint(state, "sts-access");
  state.stsTokens.add(record.issued);
  return Response.json({
    access_token: record.issued,
    issued_token_type: ACCESS_TOKEN_TYPE,
    token_type: "Bearer",
    expires_in: state.lifetimeSeconds,
  });
}

/** Answers generateAccessToken as the IAM Credentials API does, recording it in `state.iam`. */
async function impersonate(
  state: StandInState,
  request: Request,
  serviceAccount: string,
): Promise<Response> {
  const text = await request.text();
  const authorization = request.headers.get("authorization");
  const record: IamRequest = {
    serviceAccount,
    bearer: authorization?.match(/^Bearer (.+)$/)?.[1] ?? null,
    body: undefined,
  };
  state.iam.push(record);
  const refuse = (status: number, message: string) => {
    record.error = message;
    return googleError(status, message);
  };
  try {
    record.body = JSON.parse(text);
  } catch {
    return refuse(400, "Invalid JSON payload received");
  }
  if (record.bearer === null || !state.stsTokens.has(record.bearer)) {
    return refuse(401, "Request had invalid authentication credentials");
  }
  if (state.denyImpersonation(serviceAccount)) {
    return refuse(
      403,
      "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
    );
  }
  const { scope, lifetime } = record.body as { scope?: unknown; lifetime?: unknown };
  if (
    !Array.isArray(scope) || scope.length === 0 || !scope.every((s) => typeof s === "string")
  ) {
    return refuse(400, "Scope required");
  }
  let seconds = 3600;
  if (lifetime !== undefined) {
    const match = typeof lifetime === "string" ? lifetime.match(/^(\d+)(?:\.\d+)?s$/) : null;
    if (!match) return refuse(400, `Invalid value at 'lifetime' (${JSON.stringify(lifetime)})`);
    seconds = Number(match[1]);
    if (seconds < 1 || seconds > 43_200) return refuse(400, "Lifetime out of range");
  }
  record.issued = mint(state, "sa-access");
  const expireTime = new Date(Date.now() + Math.min(seconds, state.lifetimeSeconds) * 1000);
  return Response.json({
    accessToken: record.issued,
    expireTime: expireTime.toISOString().replace(/\.\d+Z$/, "Z"),
  });
}

/** Sends each request to the STS or the IAM stand-in; any other is recorded in `state.stray`. */
async function route(state: StandInState, request: Request): Promise<Response> {
  const { pathname } = new URL(request.url);
  const account = pathname.match(
    /^\/v1\/projects\/-\/serviceAccounts\/([^/:]+):generateAccessToken$/,
  )
    ?.[1];
  if (request.method === "POST" && pathname === "/v1/token") return await exchange(state, request);
  if (request.method === "POST" && account !== undefined) {
    return await impersonate(state, request, decodeURIComponent(account));
  }
  state.stray.push(`${request.method} ${pathname}`);
  await request.body?.cancel();
  return googleError(404, "Not found");
}

/** Starts the STS and IAM Credentials stand-ins on 127.0.0.1 (one server, port 0). */
export function startGoogleStandIns(options: GoogleStandInOptions = {}): GoogleStandIns {
  const {
    lifetimeSeconds = 60,
    checkSubjectToken = () => undefined,
    denyImpersonation = () => false,
  } = options;
  const state: StandInState = {
    lifetimeSeconds,
    checkSubjectToken,
    denyImpersonation,
    sts: [],
    iam: [],
    stray: [],
    stsTokens: new Set(),
    issuedCount: 0,
  };
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    (request) => route(state, request),
  );
  const host = `127.0.0.1:${server.addr.port}`;
  const origin = `http://${host}`;
  const close = async () => {
    if (!controller.signal.aborted) controller.abort();
    await server.finished;
  };
  return {
    origin,
    host,
    stsUrl: `${origin}/v1/token`,
    impersonationUrl: (email) =>
      `${origin}/v1/projects/-/serviceAccounts/${encodeURIComponent(email)}:generateAccessToken`,
    sts: state.sts,
    iam: state.iam,
    stray: state.stray,
    close,
    [Symbol.asyncDispose]: close,
  };
}

/** What a hand-made `external_account` credentials file holds. */
export interface ExternalAccountOptions {
  /** The workload identity provider, `//iam.googleapis.com/projects/…/providers/…`. */
  audience: string;
  tokenUrl: string;
  /** The file the subject token is read from (`credential_source.file`). */
  subjectTokenFile: string;
  /** @default "urn:ietf:params:oauth:token-type:jwt" */
  subjectTokenType?: string;
  serviceAccountImpersonationUrl?: string;
  /** `service_account_impersonation.token_lifetime_seconds` */
  tokenLifetimeSeconds?: number;
}

/**
 * An `external_account` credentials object with a file credential source in text format, as
 * `gcloud iam workload-identity-pools create-cred-config` writes one.
 */
export function externalAccount(options: ExternalAccountOptions): Record<string, unknown> {
  return {
    type: "external_account",
    universe_domain: "googleapis.com",
    audience: options.audience,
    subject_token_type: options.subjectTokenType ?? "urn:ietf:params:oauth:token-type:jwt",
    token_url: options.tokenUrl,
    credential_source: { file: options.subjectTokenFile, format: { type: "text" } },
    ...options.serviceAccountImpersonationUrl === undefined ? {} : {
      service_account_impersonation_url: options.serviceAccountImpersonationUrl,
    },
    ...options.tokenLifetimeSeconds === undefined ? {} : {
      service_account_impersonation: { token_lifetime_seconds: options.tokenLifetimeSeconds },
    },
  };
}

/** One round of the Google client: the access token it got, or its error message. */
export interface GoogleRound {
  token?: string;
  error?: string;
  stack?: string;
}

/** What the Google client did and what the stand-ins saw while it ran. */
export interface GoogleClientResult extends ClientRun<GoogleRound> {
  /** The subject token of each token exchange made during the run, in order. */
  subjectTokens: (string | null)[];
  /** The token exchanges made during the run. */
  sts: StsRequest[];
  /** The impersonation requests made during the run. */
  iam: IamRequest[];
}

export interface GoogleClientOptions {
  /** How many access tokens to ask for, one client throughout. @default 2 */
  rounds?: number;
  /** Runs before each round after the first (say, rewrite or wait for the subject token file). */
  between?: (round: number) => void | Promise<void>;
  /** More environment for the client (it has only what it needs otherwise). */
  env?: Record<string, string>;
  /** Files the client may read besides the credentials file and its `credential_source.file`. */
  read?: string[];
}

/**
 * Runs google-auth-library (`new GoogleAuth({ scopes })`, `getAccessToken()`) in a subprocess with
 * GOOGLE_APPLICATION_CREDENTIALS=CREDENTIALS_FILE, permitted only 127.0.0.1, the environment, and
 * reading the credentials and subject token files; GCE metadata detection is off and its host is
 * the stand-in, so any metadata request lands in `google.stray`.
 */
export async function runGoogleClient(
  google: GoogleStandIns,
  credentialsFile: string,
  options: GoogleClientOptions = {},
): Promise<GoogleClientResult> {
  const read = [credentialsFile, ...options.read ?? []];
  try {
    const source = JSON.parse(await Deno.readTextFile(credentialsFile))?.credential_source?.file;
    if (typeof source === "string") read.push(source);
  } catch { /* the client will say what is wrong with it */ }
  const stsBefore = google.sts.length;
  const iamBefore = google.iam.length;
  const run = await runClientProcess<GoogleRound>(new URL("./_google_client.ts", import.meta.url), {
    permissions: ["--allow-net=127.0.0.1", "--allow-env", `--allow-read=${read.join(",")}`],
    env: {
      GOOGLE_APPLICATION_CREDENTIALS: credentialsFile,
      METADATA_SERVER_DETECTION: "none",
      GCE_METADATA_HOST: google.host,
      GCE_METADATA_IP: google.host,
      // Without a project ID the library asks Cloud Resource Manager (on the internet) for the one
      // behind the audience's project number on its first token; a known ID skips that.
      GOOGLE_CLOUD_PROJECT: "standin-project",
      ...options.env,
    },
    rounds: options.rounds,
    between: options.between,
  });
  const sts = google.sts.slice(stsBefore);
  return {
    ...run,
    subjectTokens: sts.map((request) => request.subjectToken),
    sts,
    iam: google.iam.slice(iamBefore),
  };
}
