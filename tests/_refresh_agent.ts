// Helpers for tests/bin-refresh/buildkite-agent, the stand-in agent for long jobs that mints a
// fresh short-lived OIDC token on every call (see the script's header for its variables).

import { decodeJwt } from "../_jwt.ts";

/** The directory to put first on PATH for the refresh stand-in agent. */
export const REFRESH_STANDIN_BIN = decodeURIComponent(
  new URL("./bin-refresh", import.meta.url).pathname,
);

/** One token the stand-in minted. */
export interface MintedToken {
  token: string;
  /** Its decoded claims (`aud`, `iat`, `exp`, `jti`, …). */
  claims: Record<string, unknown>;
}

/** Every token the stand-in minted with STANDIN_LOG=LOG, oldest first (none before the first). */
export async function mintedTokens(log: string): Promise<MintedToken[]> {
  const text = await Deno.readTextFile(`${log}.tokens`).catch((error) => {
    if (error instanceof Deno.errors.NotFound) return "";
    throw error;
  });
  return text.split("\n").filter((line) => line).map((token) => ({
    token,
    claims: decodeJwt(token)?.claims ?? {},
  }));
}
