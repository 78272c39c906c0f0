import { decodeJsonObject } from "./_json.ts";

/**
 * The parts of a JWT that are safe to show: its header and its claims, never its signature.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7519#section-7.2}
 *
 * @example Checking a token's audience before sending it
 * ```ts
 * import { type DecodedJwt, decodeJwt } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const token = "eyJhbGciOiJub25lIn0.eyJhdWQiOiJzdHMuZXhhbXBsZS5jb20ifQ.";
 * const decoded: DecodedJwt | undefined = decodeJwt(token);
 * assert.deepEqual(decoded, { header: { alg: "none" }, claims: { aud: "sts.example.com" } });
 * ```
 */
export interface DecodedJwt {
  /** The JOSE header, such as `{ "alg": "RS256", "kid": "…" }`. */
  header: Record<string, unknown>;
  /** The claims, such as `iss`, `sub`, `aud` and `exp`. */
  claims: Record<string, unknown>;
}

function decodeSegment(segment: string): Record<string, unknown> | undefined {
  // base64url (RFC 7515 §2) without padding; tolerate standard base64 and padding as well.
  if (segment === "" || !/^[A-Za-z0-9_+/-]+={0,2}$/.test(segment)) return undefined;
  const base64 = segment.replace(/=+$/, "").replaceAll("-", "+").replaceAll("_", "/");
  if (base64.length % 4 === 1) return undefined;
  try {
    const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
    return decodeJsonObject(Uint8Array.from(binary, (c) => c.charCodeAt(0)));
  } catch {
    return undefined;
  }
}

/**
 * Decodes the header and claims of a JWT (JWS compact serialisation) without verifying it, for
 * showing what a token says. Never throws: an opaque or malformed token gives `undefined`.
 *
 * @see {@link https://www.rfc-editor.org/rfc/rfc7519#section-7.2}
 *
 * @param token The token.
 * @returns The decoded header and claims, or `undefined` when the token is not a readable JWT.
 *
 * @example Reading the claims of a token
 * ```ts
 * import { decodeJwt } from "@equinixmetal/token-exchange";
 * import assert from "node:assert/strict";
 *
 * const token = "eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FnZW50LmJ1aWxka2l0ZS5jb20ifQ.";
 * assert.deepEqual(decodeJwt(token)?.claims, { iss: "https://agent.buildkite.com" });
 * assert.equal(decodeJwt("an-opaque-token"), undefined);
 * ```
 */
export function decodeJwt(token: string): DecodedJwt | undefined {
  const parts = token.trim().split(".");
  // A JWS has three parts; a JWE has five and its claims are encrypted.
  if (parts.length !== 3) return undefined;
  const header = decodeSegment(parts[0]!);
  const claims = decodeSegment(parts[1]!);
  return header && claims ? { header, claims } : undefined;
}
