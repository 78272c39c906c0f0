// The options of the plugin's hand-over modes, read and checked: AWS (`aws-role-arn` and the
// `aws-*` options), Google (`google-credentials`) and Kubernetes (`kubernetes-server`). Each
// message names the pipeline.yml option (or the variable) it is about.

import { type Env, type OptionValues, UsageError } from "./_cli_flags.ts";
import { TOKEN_TYPES } from "./_constants.ts";
import { awsSessionName } from "./_handover.ts";
import { type PluginContext, resolvePath, shown } from "./_plugin_values.ts";
import { GITHUB_SCOPE, OCTO_STS_IDENTITY, VAULT_MOUNT, VAULT_NAMESPACE } from "./_providers.ts";
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

/** What `azure-client-id` and `azure-tenant-id` hand over, and where the hook checks them. */
export interface AzureOptions {
  clientId: string;
  tenantId: string;
  /** `azure-authority-host`: Microsoft Entra's, or a sovereign cloud's. */
  authorityHost: URL;
  /** Whether `azure-authority-host` was set (then exported as AZURE_AUTHORITY_HOST). */
  authorityGiven: boolean;
}

/** The audience of the OIDC token for Azure: what Entra's federated credentials expect. */
export const AZURE_AUDIENCE = "api://AzureADTokenExchange";
/** Microsoft Entra ID's global authority. */
export const AZURE_AUTHORITY_HOST = "https://login.microsoftonline.com";
/** The scope the hook's check asks for: Azure Resource Manager's. */
export const AZURE_CHECK_SCOPE = "https://management.azure.com/.default";

const GUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** Reads `azure-client-id`, `azure-tenant-id` and `azure-authority-host`. */
export function readAzure(options: OptionValues): AzureOptions {
  const clientId = options.variable("AZURE_CLIENT_ID");
  const tenantId = options.variable("AZURE_TENANT_ID");
  if (clientId === undefined || tenantId === undefined) {
    throw new UsageError(
      `${clientId === undefined ? "azure-tenant-id" : "azure-client-id"} needs ${
        clientId === undefined ? "azure-client-id" : "azure-tenant-id"
      }: set both, the application (client) ID and the directory (tenant) ID of the app registration or managed identity`,
    );
  }
  if (!GUID.test(clientId)) {
    throw new UsageError(
      `azure-client-id is "${
        shown(clientId)
      }", not an application (client) ID: use the GUID the app registration shows, such as 00000000-0000-0000-0000-000000000000`,
    );
  }
  if (!GUID.test(tenantId) && !/^[A-Za-z0-9][A-Za-z0-9.-]{0,252}$/.test(tenantId)) {
    throw new UsageError(
      `azure-tenant-id is "${
        shown(tenantId)
      }", not a directory (tenant) ID: use its GUID, or a domain such as contoso.onmicrosoft.com`,
    );
  }
  const host = options.variable("AZURE_AUTHORITY_HOST");
  let authorityHost: URL;
  try {
    authorityHost = parseSingleHostUrl(
      host ?? AZURE_AUTHORITY_HOST,
      "azure-authority-host",
      "no credentials",
    );
  } catch (error) {
    throw new UsageError((error as TypeError).message);
  }
  return { clientId, tenantId, authorityHost, authorityGiven: host !== undefined };
}

/** Entra's token endpoint for a tenant, where the hook checks the federated credential. */
export function azureTokenUrl(azure: AzureOptions): URL {
  return new URL(
    `${azure.authorityHost.href.replace(/\/?$/, "/")}${azure.tenantId}/oauth2/v2.0/token`,
  );
}

/** What `vault-addr` logs in to. */
export interface VaultOptions {
  addr: URL;
  role: string;
  mount: string;
  namespace: string | undefined;
}

/** Reads `vault-addr`, `vault-role`, `vault-mount` and `vault-namespace`. */
export function readVault(options: OptionValues): VaultOptions {
  let addr: URL;
  try {
    addr = parseSingleHostUrl(
      options.variable("VAULT_ADDR")!,
      "vault-addr",
      "no credentials (the OIDC token is the credential)",
    );
  } catch (error) {
    throw new UsageError((error as TypeError).message);
  }
  const role = options.variable("VAULT_ROLE");
  if (role === undefined) {
    throw new UsageError(
      "vault-addr needs vault-role: set it to the JWT auth method's role for this pipeline",
    );
  }
  const mount = options.variable("VAULT_MOUNT") ?? "jwt";
  if (!VAULT_MOUNT.test(mount)) {
    throw new UsageError(
      `vault-mount is "${
        shown(mount)
      }", not a mount path: use the JWT auth method's path, such as jwt or buildkite`,
    );
  }
  const namespace = options.variable("VAULT_NAMESPACE");
  if (
    namespace !== undefined &&
    !VAULT_NAMESPACE.test(namespace)
  ) {
    throw new UsageError(
      `vault-namespace is "${
        shown(namespace)
      }", not a namespace path: use one such as ci or team/ci`,
    );
  }
  return { addr, role, mount, namespace };
}

/** What `github-token-scope` asks octo-sts for, and where pre-exit revokes it. */
export interface GitHubOptions {
  scope: string;
  identity: string;
  octoStsUrl: URL;
  apiUrl: URL;
}

/** The audience of the OIDC token for the default octo-sts instance: its domain. */
export const OCTO_STS_AUDIENCE = "octo-sts.dev";

/**
 * Reads `github-token-scope`, `github-token-identity`, `octo-sts-url` and `github-api-url`.
 *
 * @param options The plugin's options.
 * @param audienceGiven Whether `audience` is set: another octo-sts instance needs its own.
 */
export function readGitHub(options: OptionValues, audienceGiven: boolean): GitHubOptions {
  const scope = options.variable("GITHUB_TOKEN_SCOPE")!;
  if (!GITHUB_SCOPE.test(scope)) {
    throw new UsageError(
      `github-token-scope is "${shown(scope)}": use org/repo, or org for all of its repositories`,
    );
  }
  const identity = options.variable("GITHUB_TOKEN_IDENTITY");
  if (identity === undefined || !OCTO_STS_IDENTITY.test(identity)) {
    throw new UsageError(
      identity === undefined
        ? "github-token-scope needs github-token-identity: set it to the trust policy's name (.github/chainguard/NAME.sts.yaml)"
        : `github-token-identity is "${
          shown(identity)
        }": use the trust policy's name, such as buildkite-release`,
    );
  }
  const url = (option: string, fallback: string) => {
    try {
      return parseSingleHostUrl(
        options.variable(option.toUpperCase().replaceAll("-", "_")) ?? fallback,
        option,
        "no credentials",
      );
    } catch (error) {
      throw new UsageError((error as TypeError).message);
    }
  };
  const octoStsGiven = options.variable("OCTO_STS_URL") !== undefined;
  if (octoStsGiven && !audienceGiven) {
    throw new UsageError(
      "octo-sts-url needs audience: set it to the domain your octo-sts instance expects in the OIDC token's aud",
    );
  }
  return {
    scope,
    identity,
    octoStsUrl: url("octo-sts-url", "https://octo-sts.dev"),
    apiUrl: url("github-api-url", "https://api.github.com"),
  };
}
