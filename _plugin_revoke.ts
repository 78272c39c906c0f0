// `revoke`: what pre-exit revokes, and how. The hook (and each renewal) records the token it
// exported and where to revoke it in the entry's private directory, never a secret it can read
// again (the client secret's variable is named, not copied); pre-exit's cleanup run revokes it
// (RFC 7009, Vault's revoke-self, GitHub's installation token) and says so in one warning line if
// it cannot, never failing the job.

import { openSession } from "./_cli_exchange.ts";
import type { Env } from "./_cli_flags.ts";
import type { PluginConfig } from "./_plugin_options.ts";
import type { Tokens } from "./_plugin_modes.ts";
import { revokeAtEndpoint, revokeAtGitHub, revokeAtVault } from "./_providers.ts";
import { maskSecrets, oneLine } from "./_redact.ts";

/** The file in an entry's directory that holds what pre-exit revokes. */
export const REVOKE_FILE = "revoke.json";

/** What pre-exit revokes: the token, where, and how the request is sent. */
export interface RevokeRecord {
  kind: "oauth" | "vault" | "github";
  url: string;
  token: string;
  clientId?: string;
  /** The variable that holds the client secret, read again at pre-exit. */
  clientSecretEnv?: string;
  clientAuth?: "basic" | "post";
  namespace?: string;
  timeout: number;
  retries: number;
  caFile?: string;
}

/**
 * What pre-exit will revoke, or a warning that it cannot (an issuer whose metadata names no
 * revocation endpoint on its host).
 */
export function revokeRecord(
  config: PluginConfig,
  tokens: Tokens,
): { record?: RevokeRecord; warning?: string } {
  if (config.revoke === undefined || tokens.issued === undefined) return {};
  const http = {
    token: tokens.issued.accessToken,
    timeout: config.http.timeout,
    retries: config.http.retries,
    ...(config.http.caFile !== undefined && { caFile: config.http.caFile }),
  };
  if (config.vault !== undefined) {
    return {
      record: {
        kind: "vault",
        url: config.vault.addr.href,
        ...(config.vault.namespace !== undefined && { namespace: config.vault.namespace }),
        ...http,
      },
    };
  }
  if (config.github !== undefined) {
    return { record: { kind: "github", url: config.github.apiUrl.href, ...http } };
  }
  const endpoint = config.revoke.revocationEndpoint ?? tokens.revocationEndpoint;
  if (endpoint === undefined) {
    return {
      warning:
        "⚠️ revoke: the issuer's metadata names no revocation_endpoint on its host, so the token will not be revoked when the job ends: set revocation-endpoint",
    };
  }
  const exchange = config.exchange!;
  return {
    record: {
      kind: "oauth",
      url: endpoint.href,
      ...(exchange.clientId !== undefined && { clientId: exchange.clientId }),
      ...(exchange.clientSecretEnv !== undefined && {
        clientSecretEnv: exchange.clientSecretEnv,
        clientAuth: exchange.clientAuth === "post" ? "post" : "basic",
      }),
      ...http,
    },
  };
}

/**
 * Revokes what the record says.
 *
 * @param record What the hook recorded.
 * @param env Reads the client secret's variable.
 * @returns A warning for the job's log when it could not, or undefined.
 */
export async function revokeRecorded(record: RevokeRecord, env: Env): Promise<string | undefined> {
  const secret = record.clientSecretEnv === undefined ? undefined : env(record.clientSecretEnv);
  const what = { oauth: "token", vault: "Vault token", github: "GitHub token" }[record.kind];
  try {
    using session = openSession(
      { ...record, caFile: record.caFile, caFileLabel: "ca-file" },
      new URL(record.url),
      undefined,
    );
    const http = { ...session.http, token: record.token };
    if (record.kind === "vault") {
      await revokeAtVault({ ...http, vaultAddr: record.url, namespace: record.namespace });
    } else if (record.kind === "github") {
      await revokeAtGitHub({ ...http, githubApiUrl: record.url });
    } else {
      if (record.clientSecretEnv !== undefined && !secret) {
        return `⚠️ The ${what} was not revoked: the client secret's variable ${record.clientSecretEnv} is no longer set at the end of the job; it stays valid until it expires`;
      }
      await revokeAtEndpoint({
        ...http,
        revocationEndpoint: record.url,
        clientId: record.clientId,
        clientSecret: secret || undefined,
        clientAuth: record.clientAuth,
      });
    }
    return undefined;
  } catch (error) {
    const secrets = [record.token, secret].filter((s): s is string => !!s);
    return `⚠️ The ${what} was not revoked: ${
      oneLine(maskSecrets((error as Error).message, secrets))
    }; it stays valid until it expires`;
  }
}
