// What each of the engine's modes asks for and hands over: the request it makes with the OIDC
// token (an exchange, a Vault login, an octo-sts exchange; or, in the hook, the one check of an
// AWS role, Google's exchange or an Entra federated credential), the variables it exports, and
// what the log says. _plugin.ts runs them; _plugin_files.ts writes their files.

import { assumeRoleWithWebIdentity, type AwsCredentials } from "./_aws.ts";
import { exchangeFor, type Session } from "./_cli_exchange.ts";
import type { Env } from "./_cli_flags.ts";
import { exchange } from "./_exchange.ts";
import { checkGoogle } from "./_google.ts";
import { AWS_PROFILE } from "./_handover.ts";
import type { PluginConfig } from "./_plugin_options.ts";
import {
  type AwsOptions,
  AZURE_CHECK_SCOPE,
  type AzureOptions,
  azureTokenUrl,
} from "./_plugin_providers.ts";
import { exchangeAtOctoSts, loginToVault } from "./_providers.ts";
import { summarise } from "./_redact.ts";
import type { TokenExchangeResponse } from "./_response.ts";

/** What one run obtained: the OIDC token, and what it was traded for. */
export interface Tokens {
  subjectToken?: string;
  /** The token an exchange, a Vault login or octo-sts issued. */
  issued?: TokenExchangeResponse;
  /** The role's credentials, when the hook assumed it (`aws-role-arn`). */
  aws?: AwsCredentials;
  /** The revocation endpoint the issuer's metadata named, for `revoke`. */
  revocationEndpoint?: URL;
}

/** The variables of AWS's static credentials, which `aws-credentials: environment` exports. */
export const AWS_KEYS = ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"];
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
/** What Azure's SDKs and CLI (AZURE_*) and Terraform's azurerm provider (ARM_*) read. */
const AZURE_VARIABLES = [
  "AZURE_CLIENT_ID",
  "AZURE_TENANT_ID",
  "AZURE_FEDERATED_TOKEN_FILE",
  "ARM_CLIENT_ID",
  "ARM_TENANT_ID",
  "ARM_OIDC_TOKEN_FILE_PATH",
  "ARM_USE_OIDC",
];

/** What an entry exports and writes, worked out before anything is asked for. */
export interface Plan {
  label: string;
  exports: string[];
  secrets: string[];
}

/** What the entry will export, and which of those hold secrets. */
export function plan(config: PluginConfig): Plan {
  const exports: string[] = [];
  const secrets: string[] = [];
  let label: string;
  switch (config.mode) {
    case "exchange":
    case "vault":
    case "github":
      label = config.mode === "vault"
        ? `vault-role ${config.vault!.role}`
        : config.mode === "github"
        ? `github-token-scope ${config.github!.scope}`
        : `env-var ${config.envVar}`;
      exports.push(config.envVar, `${config.envVar}_EXPIRES_AT`);
      secrets.push(config.envVar);
      if (config.tokenFile !== undefined) exports.push(`${config.envVar}_FILE`);
      if (config.kubernetes !== undefined) exports.push("KUBECONFIG");
      if (config.vault !== undefined) exports.push("VAULT_ADDR", "VAULT_NAMESPACE");
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
    case "azure":
      label = `azure-client-id ${config.azure!.clientId}`;
      exports.push(...AZURE_VARIABLES, "AZURE_AUTHORITY_HOST");
      break;
  }
  if (config.oidcTokenVar !== undefined) exports.push(config.oidcTokenVar);
  return { label, exports, secrets };
}

/** The log section's header. */
export function header(config: PluginConfig): string {
  switch (config.mode) {
    case "exchange":
      return `~~~ :key: Exchanging the job's OIDC token for ${config.envVar}`;
    case "aws":
      return `~~~ :key: Assuming ${config.aws!.roleArn} with the job's OIDC token`;
    case "google":
      return `~~~ :key: Google Cloud credentials for the job's OIDC token, through ${
        config.google!.audience
      }`;
    case "azure":
      return `~~~ :key: Azure credentials for the job's OIDC token, as ${config.azure!.clientId}`;
    case "vault":
      return `~~~ :key: Logging in to Vault at ${config.vault!.addr.origin} for ${config.envVar}`;
    case "github":
      return `~~~ :key: A GitHub token for ${
        config.github!.scope
      } from octo-sts, as ${config.envVar}`;
  }
}

/** The first URL a run requests, whose client is made while the agent answers. */
export function firstUrl(config: PluginConfig): URL {
  if (config.exchange !== undefined) {
    return config.exchange.tokenEndpoint ?? config.exchange.issuer!;
  }
  if (config.azure !== undefined) return azureTokenUrl(config.azure);
  if (config.vault !== undefined) return config.vault.addr;
  if (config.github !== undefined) return config.github.octoStsUrl;
  return config.aws?.stsUrl ?? new URL(config.google!.tokenUrl);
}

/** Whether a run makes a request: every one that issues a token, and the hook's checks. */
export function requests(config: PluginConfig, check: boolean): boolean {
  return config.exchange !== undefined || config.vault !== undefined ||
    config.github !== undefined || check;
}

/** A token from outside an OAuth token response, as one. */
function issuedToken(accessToken: string, expiresIn: number | undefined): TokenExchangeResponse {
  return {
    accessToken,
    issuedTokenType: undefined,
    tokenType: "Bearer",
    expiresIn,
    scope: undefined,
    refreshToken: undefined,
    raw: {},
  };
}

/**
 * Trades the OIDC token as the mode says: an exchange, a Vault login, octo-sts; and in the hook
 * (`check`), the one check of an AWS role, Google's exchange or an Entra federated credential.
 */
export async function ask(
  config: PluginConfig,
  tokens: Tokens,
  session: Session,
  check: boolean,
): Promise<void> {
  const subjectToken = tokens.subjectToken!;
  const http = session.http;
  if (config.exchange !== undefined) {
    tokens.issued = await exchangeFor(config.exchange, subjectToken, session, (url) => {
      tokens.revocationEndpoint = url;
    });
  } else if (config.vault !== undefined) {
    const { clientToken, leaseDuration } = await loginToVault({
      ...http,
      vaultAddr: config.vault.addr,
      role: config.vault.role,
      jwt: subjectToken,
      mount: config.vault.mount,
      namespace: config.vault.namespace,
    });
    tokens.issued = issuedToken(clientToken, leaseDuration || undefined);
  } else if (config.github !== undefined) {
    const { token } = await exchangeAtOctoSts({
      ...http,
      octoStsUrl: config.github.octoStsUrl,
      scope: config.github.scope,
      identity: config.github.identity,
      oidcToken: subjectToken,
    });
    tokens.issued = issuedToken(token, undefined);
  } else if (!check) {
    return;
  } else if (config.aws !== undefined) {
    tokens.aws = await assumeRoleWithWebIdentity({
      stsUrl: config.aws.stsUrl,
      roleArn: config.aws.roleArn,
      sessionName: config.aws.sessionName,
      durationSeconds: config.aws.durationSeconds,
      webIdentityToken: subjectToken,
    }, http);
  } else if (config.azure !== undefined) {
    await checkAzure(config.azure, subjectToken, session);
  } else {
    await checkGoogle(config.google!, subjectToken, http);
  }
}

/**
 * The hook's check of an Entra federated credential: the client-credentials request with the OIDC
 * token as the client assertion that Azure's tools will make (for Azure Resource Manager's scope).
 */
async function checkAzure(azure: AzureOptions, subjectToken: string, session: Session) {
  await exchange({
    ...session.http,
    tokenEndpoint: azureTokenUrl(azure),
    subjectToken,
    grantType: "client-credentials",
    clientAuth: "assertion",
    clientId: azure.clientId,
    scope: AZURE_CHECK_SCOPE,
    refusal: {
      who:
        `Microsoft Entra refused the OIDC token for client ${azure.clientId} in tenant ${azure.tenantId}`,
      hint:
        "; check the federated credential: its issuer, subject and audience must be the token's iss, sub and aud below",
    },
  });
}

/** An RFC 3339 time in UTC, to the second. */
function rfc3339(seconds: number): string {
  return new Date(seconds * 1000).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** What an entry exports: the variables, and the words of the line that says so. */
export interface Exports {
  variables: [string, string][];
  summary: string;
}

/**
 * What the hook exports, and the line that says so.
 *
 * @param config The entry.
 * @param dir The entry's private directory.
 * @param tokenPath The issued token's file, if one was written.
 * @param tokens What was obtained.
 * @param now The time, in seconds since the epoch.
 */
export function exportsOf(
  config: PluginConfig,
  dir: string,
  tokenPath: string | undefined,
  tokens: Tokens,
  now: number,
): Exports {
  const variables: [string, string][] = [];
  let summary: string;
  let lifetime = "";
  switch (config.mode) {
    case "exchange":
    case "vault":
    case "github": {
      const issued = tokens.issued!;
      variables.push([config.envVar, issued.accessToken]);
      summary = config.envVar;
      if (tokenPath !== undefined) {
        variables.push([`${config.envVar}_FILE`, tokenPath]);
        summary += ` and ${config.envVar}_FILE (${tokenPath})`;
      }
      if (config.kubernetes !== undefined) {
        variables.push(["KUBECONFIG", `${dir}/kubeconfig`]);
        summary += `, KUBECONFIG (for ${config.kubernetes.server.origin})`;
      }
      if (config.vault !== undefined) summary += vaultExports(config, variables);
      const expiresIn = issued.expiresIn;
      if (expiresIn !== undefined) {
        variables.push([`${config.envVar}_EXPIRES_AT`, rfc3339(now + Math.floor(expiresIn))]);
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
    case "azure":
      summary = azureExports(config.azure!, `${dir}/oidc-token`, variables);
      break;
  }
  if (config.oidcTokenVar !== undefined) {
    variables.push([config.oidcTokenVar, `${dir}/oidc-token`]);
    summary += `, ${config.oidcTokenVar}`;
  }
  if (config.refresh) summary += "; kept fresh until the job ends";
  if (config.revoke !== undefined) summary += "; revoked when it ends";
  return { variables, summary: `Exported ${summary}${lifetime}` };
}

/** VAULT_ADDR and VAULT_NAMESPACE (into `variables`), and the line's words for them. */
function vaultExports(config: PluginConfig, variables: [string, string][]): string {
  const vault = config.vault!;
  const addr = vault.addr.href.replace(/\/$/, "");
  variables.push(["VAULT_ADDR", addr]);
  if (vault.namespace === undefined) return `, VAULT_ADDR (${addr})`;
  variables.push(["VAULT_NAMESPACE", vault.namespace]);
  return `, VAULT_ADDR (${addr}) and VAULT_NAMESPACE (${vault.namespace})`;
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

/** What Azure's tools and Terraform read (into `variables`), and the line's words for them. */
function azureExports(
  azure: AzureOptions,
  oidcTokenFile: string,
  variables: [string, string][],
): string {
  variables.push(
    ["AZURE_CLIENT_ID", azure.clientId],
    ["AZURE_TENANT_ID", azure.tenantId],
    ["AZURE_FEDERATED_TOKEN_FILE", oidcTokenFile],
    ["ARM_CLIENT_ID", azure.clientId],
    ["ARM_TENANT_ID", azure.tenantId],
    ["ARM_OIDC_TOKEN_FILE_PATH", oidcTokenFile],
    ["ARM_USE_OIDC", "true"],
  );
  let summary =
    `AZURE_CLIENT_ID, AZURE_TENANT_ID and AZURE_FEDERATED_TOKEN_FILE, and for Terraform ARM_CLIENT_ID, ARM_TENANT_ID, ARM_OIDC_TOKEN_FILE_PATH and ARM_USE_OIDC`;
  if (azure.authorityGiven) {
    const host = azure.authorityHost.href.replace(/\/$/, "");
    variables.push(["AZURE_AUTHORITY_HOST", host]);
    summary += `, AZURE_AUTHORITY_HOST (${host})`;
  }
  return summary;
}

/** The tokens just obtained that the redactor masks, the issued ones first. */
export function redactable(config: PluginConfig, tokens: Tokens): string[] {
  const secrets: string[] = [];
  if (tokens.issued !== undefined) secrets.push(tokens.issued.accessToken);
  if (tokens.aws !== undefined && config.aws?.credentials === "environment") {
    secrets.push(tokens.aws.secretAccessKey, tokens.aws.sessionToken);
  }
  if (config.keepsOidcToken) secrets.push(tokens.subjectToken!);
  return secrets;
}

/**
 * What the hook checked with the provider, and the AWS variables of the agent's environment to
 * unset (with which the AWS tools would use other credentials than the role's).
 */
export function checked(
  config: PluginConfig,
  entry: Plan,
  tokens: Tokens,
  env: Env,
): { lines: string[]; unset: string[] } {
  if (config.aws !== undefined) {
    // The ARN is STS's: masked, in case it echoes the OIDC token.
    const arn = summarise(tokens.aws!.assumedRoleArn, [tokens.subjectToken!]);
    const lines = [`Assumed ${arn}: its trust policy accepts this job`];
    // Those this entry exports anyway are replaced, not unset.
    const unset = AWS_AMBIENT.filter((name) =>
      env(name) !== undefined && !entry.exports.includes(name)
    );
    if (unset.length > 0) {
      lines.push(
        `Unset ${
          unset.join(", ")
        } of the agent's environment, with which the AWS tools would not use the role`,
      );
    }
    return { lines, unset };
  }
  if (config.google !== undefined) {
    const impersonated = config.google.serviceAccount === undefined
      ? ""
      : `, and ${config.google.serviceAccount} lets it impersonate it`;
    return {
      lines: [
        `Google's STS accepts this job's OIDC token for ${config.google.audience}${impersonated}`,
      ],
      unset: [],
    };
  }
  if (config.azure !== undefined) {
    return {
      lines: [
        `Microsoft Entra accepts this job's OIDC token for ${config.azure.clientId} in tenant ${config.azure.tenantId}`,
      ],
      unset: [],
    };
  }
  return { lines: [], unset: [] };
}
