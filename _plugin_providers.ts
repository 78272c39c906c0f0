// The options of the plugin's hand-over modes, read and checked: AWS (`aws-role-arn` and the
// `aws-*` options), Google (`google-credentials`) and Kubernetes (`kubernetes-server`). Each
// message names the pipeline.yml option (or the variable) it is about.

import { type Env, type OptionValues, UsageError } from "./_cli_flags.ts";
import { TOKEN_TYPES } from "./_constants.ts";
import { awsSessionName } from "./_handover.ts";
import { type PluginContext, resolvePath, shown } from "./_plugin_values.ts";
import { parseSecureUrl, parseSingleHostUrl } from "./_url.ts";

/** How the AWS tools get the role's credentials (`aws-credentials`). */
export type AwsCredentialsMode =
  /** They assume the role themselves from the OIDC token's file, and renew by themselves. */
  | "web-identity"
  /** The hook exports the credentials it got, for tools that read only keys. */
  | "environment";

/** What `aws-role-arn` hands over, and where the hook checks it. */
export interface AwsOptions {
  roleArn: string;
  sessionName: string;
  /** `aws-session-duration`: STS's `DurationSeconds`; STS's default (3600) when undefined. */
  durationSeconds: number | undefined;
  /** `aws-region`, exported as AWS_REGION and AWS_DEFAULT_REGION. */
  region: string | undefined;
  /** Where the hook calls AssumeRoleWithWebIdentity. */
  stsUrl: URL;
  credentials: AwsCredentialsMode;
}

/** The audience of the OIDC token with `aws-role-arn`: what IAM OIDC providers expect by default. */
export const AWS_AUDIENCE = "sts.amazonaws.com";

/** An AWS region's name, such as us-east-1, eu-central-1 or us-gov-west-1. */
const REGION = /^[a-z]{2}(?:-[a-z]+)+-\d{1,2}$/;

/**
 * Reads `aws-role-arn` and the `aws-*` options.
 *
 * @param options The plugin's options.
 * @param env Reads AWS_ENDPOINT_URL_STS (or AWS_ENDPOINT_URL), AWS_REGION and AWS_DEFAULT_REGION,
 *   as the AWS tools do, and the BUILDKITE_* variables that name the session.
 * @param refresh Whether `refresh` is set.
 * @returns The AWS options.
 */
export function readAws(options: OptionValues, env: Env, refresh: boolean): AwsOptions {
  const value = (name: string) => options.variable(name);
  const roleArn = value("AWS_ROLE_ARN")!;
  if (
    roleArn.length > 600 || !/^arn:aws[a-z-]*:iam::\d{12}:role\/[A-Za-z0-9+=,.@_/-]+$/.test(roleArn)
  ) {
    throw new UsageError(
      `aws-role-arn is "${
        shown(roleArn)
      }", not the ARN of an IAM role: use one such as arn:aws:iam::123456789012:role/deploy`,
    );
  }
  const sessionName = value("AWS_SESSION_NAME") ?? awsSessionName(env);
  if (!/^[\w+=,.@-]{2,64}$/.test(sessionName)) {
    throw new UsageError(
      `aws-session-name is "${
        shown(sessionName)
      }": use 2 to 64 letters, digits and +=,.@_- (such as deploy-\${BUILDKITE_BUILD_NUMBER})`,
    );
  }
  const duration = value("AWS_SESSION_DURATION");
  if (
    duration !== undefined &&
    !(/^\d{3,5}$/.test(duration) && Number(duration) >= 900 && Number(duration) <= 43200)
  ) {
    throw new UsageError(
      `aws-session-duration is "${
        shown(duration)
      }": use a whole number of seconds from 900 to 43200`,
    );
  }
  const region = value("AWS_REGION");
  if (region !== undefined && !REGION.test(region)) {
    throw new UsageError(
      `aws-region is "${shown(region)}", not an AWS region: use one such as us-east-1`,
    );
  }
  const credentials = value("AWS_CREDENTIALS") ?? "web-identity";
  if (credentials !== "web-identity" && credentials !== "environment") {
    throw new UsageError(
      `aws-credentials is "${shown(credentials)}": use web-identity or environment`,
    );
  }
  if (credentials === "environment" && refresh) {
    throw new UsageError(
      "refresh cannot renew aws-credentials: environment, whose keys a running command keeps: use aws-credentials: web-identity (the AWS tools then renew by themselves), or a longer aws-session-duration without refresh",
    );
  }
  return {
    roleArn,
    sessionName,
    durationSeconds: duration === undefined ? undefined : Number(duration),
    region,
    stsUrl: stsUrl(region, env),
    credentials,
  };
}

/**
 * Where the AWS tools would call STS: AWS_ENDPOINT_URL_STS (or AWS_ENDPOINT_URL), else the
 * regional endpoint of `aws-region` (or AWS_REGION, AWS_DEFAULT_REGION), else the global one.
 */
function stsUrl(region: string | undefined, env: Env): URL {
  for (const name of ["AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL"]) {
    const url = env(name);
    if (!url) continue;
    try {
      return parseSecureUrl(url, name);
    } catch (error) {
      throw new UsageError((error as TypeError).message);
    }
  }
  const named = region ??
    [env("AWS_REGION"), env("AWS_DEFAULT_REGION")].find((name) =>
      name !== undefined && REGION.test(name)
    );
  if (named === undefined) return new URL("https://sts.amazonaws.com/");
  return new URL(`https://sts.${named}.amazonaws.com${named.startsWith("cn-") ? ".cn" : ""}/`);
}

/**
 * `aws-session-tags`: the claims the agent adds as AWS session tags (`--aws-session-tag`, agent
 * 3.83 and later).
 */
export function readSessionTags(options: OptionValues): string[] {
  const tags = options.variables("AWS_SESSION_TAGS");
  for (const tag of tags) {
    if (!/^[a-z][a-z0-9_]*$/.test(tag)) {
      throw new UsageError(
        `aws-session-tags has "${
          shown(tag)
        }", not the name of a claim: use claims such as organization_slug and pipeline_slug`,
      );
    }
  }
  return tags;
}

/** The default token endpoint of an external_account file: Google's STS. */
export const GOOGLE_STS_URL = "https://sts.googleapis.com/v1/token";
/** The default IAM Credentials endpoint for service account impersonation. */
export const GOOGLE_IAM_URL = "https://iamcredentials.googleapis.com/v1";

/** What `google-credentials` writes into its external_account file, and checks in the hook. */
export interface GoogleOptions {
  /** The workload identity provider, `//iam.googleapis.com/…` (STS's `audience`). */
  audience: string;
  tokenUrl: string;
  subjectTokenType: string;
  /** The IAM Credentials base URL (TOKEN_EXCHANGE_GOOGLE_IAM_URL for a mirror or a test). */
  iamUrl: string;
  serviceAccount: string | undefined;
  tokenLifetimeSeconds: number | undefined;
}

const WORKLOAD_PROVIDER =
  "//iam.googleapis.com/projects/NUMBER/locations/global/workloadIdentityPools/POOL/providers/PROVIDER";
const PROVIDER_FORM =
  /^(?:https:)?\/\/iam\.googleapis\.com\/projects\/\d+\/locations\/global\/workloadIdentityPools\/[a-z0-9-]+\/providers\/[a-z0-9-]+$/;

/**
 * Reads `google-credentials` and what goes with it. The workload identity provider is
 * `target-audience`, or else `audience` (the OIDC token's, which the provider accepts by default
 * in either form, `//iam.googleapis.com/…` or `https://iam.googleapis.com/…`).
 *
 * @param options The plugin's options.
 * @param audience The OIDC token's audience, if `audience` (or `buildkite-audience`) is set.
 * @param env Reads TOKEN_EXCHANGE_GOOGLE_IAM_URL.
 * @returns The Google options.
 */
export function readGoogle(
  options: OptionValues,
  audience: string | undefined,
  env: Env,
): GoogleOptions {
  const targets = options.list("target-audience").value;
  if (targets.length > 1) {
    throw new UsageError(
      `google-credentials takes one target-audience, the workload identity provider: ${WORKLOAD_PROVIDER}`,
    );
  }
  const [option, provider] = targets.length === 1
    ? ["target-audience", targets[0]!]
    : ["audience", audience];
  if (provider === undefined) {
    throw new UsageError(
      `google-credentials needs the workload identity provider: set audience to ${WORKLOAD_PROVIDER}`,
    );
  }
  if (!PROVIDER_FORM.test(provider)) {
    throw new UsageError(
      `${option} is "${
        shown(provider)
      }", not a workload identity provider: with google-credentials, use ${WORKLOAD_PROVIDER} (Google Cloud console, IAM, Workload Identity Federation, the provider's page)`,
    );
  }
  const subjectTokenType = options.variable("SUBJECT_TOKEN_TYPE") ?? TOKEN_TYPES.jwt;
  const endpoint = options.variable("TOKEN_ENDPOINT");
  let tokenUrl = GOOGLE_STS_URL;
  if (endpoint !== undefined) {
    try {
      tokenUrl = parseSingleHostUrl(
        endpoint,
        "Token endpoint (token-endpoint)",
        "no credentials (Google's STS takes none)",
      ).href;
    } catch (error) {
      throw new UsageError((error as TypeError).message);
    }
  }
  let iamUrl = GOOGLE_IAM_URL;
  const mirror = env("TOKEN_EXCHANGE_GOOGLE_IAM_URL");
  if (mirror) {
    try {
      iamUrl = parseSecureUrl(mirror, "TOKEN_EXCHANGE_GOOGLE_IAM_URL").href.replace(/\/$/, "");
    } catch (error) {
      throw new UsageError((error as TypeError).message);
    }
  }
  const serviceAccount = options.variable("SERVICE_ACCOUNT");
  if (serviceAccount !== undefined && !/^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+$/.test(serviceAccount)) {
    throw new UsageError(
      `service-account is "${
        shown(serviceAccount)
      }", not a service account's email: use one such as deployer@my-project.iam.gserviceaccount.com`,
    );
  }
  const lifetime = options.variable("SERVICE_ACCOUNT_TOKEN_LIFETIME");
  if (
    lifetime !== undefined &&
    !(/^\d{1,5}$/.test(lifetime) && Number(lifetime) >= 600 && Number(lifetime) <= 43200)
  ) {
    throw new UsageError(
      `service-account-token-lifetime is "${
        shown(lifetime)
      }": use a whole number of seconds from 600 to 43200`,
    );
  }
  return {
    audience: provider.replace(/^https:/, ""),
    tokenUrl,
    subjectTokenType,
    iamUrl,
    serviceAccount,
    tokenLifetimeSeconds: lifetime === undefined ? undefined : Number(lifetime),
  };
}

/** The cluster `kubernetes-server` names, for a kubeconfig of the entry's own. */
export interface KubernetesOptions {
  server: URL;
  /** `kubernetes-ca`: the cluster's CA certificate (a PEM file), its path resolved. */
  caFile: string | undefined;
}

/** Reads `kubernetes-server` and `kubernetes-ca`. */
export function readKubernetes(
  options: OptionValues,
  context: PluginContext,
): KubernetesOptions | undefined {
  const server = options.variable("KUBERNETES_SERVER");
  if (server === undefined) return undefined;
  let url: URL;
  try {
    url = parseSingleHostUrl(
      server,
      "kubernetes-server",
      "no credentials (the token is the credential)",
    );
  } catch (error) {
    throw new UsageError((error as TypeError).message);
  }
  const ca = options.variable("KUBERNETES_CA");
  return {
    server: url,
    caFile: ca === undefined
      ? undefined
      : resolvePath(ca, "kubernetes-ca", "~/.kube/cluster-ca.pem", context),
  };
}
