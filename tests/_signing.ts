// Signed JWTs for the interop tests, with Web Crypto only: an ES256 issuer that publishes a JWKS,
// and the checks a token endpoint makes of a subject token (signature against the JWKS, iss, aud,
// exp, nbf).

/** A JSON Web Key Set (RFC 7517 §5). */
export interface Jwks {
  keys: (JsonWebKey & { kid: string })[];
}

/** Claims a subject token carries; numbers are seconds since the epoch. */
export type Claims = Record<string, unknown>;

function base64url(bytes: Uint8Array): string {
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_")
    .replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) throw new Error("not base64url");
  const base64 = text.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function encodeJson(value: unknown): string {
  return base64url(new TextEncoder().encode(JSON.stringify(value)));
}

const ES256 = { name: "ECDSA", namedCurve: "P-256", hash: "SHA-256" } as const;

/** An OIDC issuer that signs JWTs with one ES256 key and publishes its public key as a JWKS. */
export interface JwtIssuer {
  /** The `iss` its tokens carry. */
  iss: string;
  /** Its public keys. */
  jwks: Jwks;
  /** Signs `claims` (with `iss` added unless given) as a compact JWS. */
  sign(claims: Claims, header?: Record<string, unknown>): Promise<string>;
}

/** Makes an issuer with a fresh ES256 key pair. */
export async function createIssuer(iss: string, kid = "test-key-1"): Promise<JwtIssuer> {
  const { privateKey, publicKey } = await crypto.subtle.generateKey(ES256, true, [
    "sign",
    "verify",
  ]);
  const { kty, crv, x, y } = await crypto.subtle.exportKey("jwk", publicKey);
  return {
    iss,
    jwks: { keys: [{ kty, crv, x, y, kid, alg: "ES256", use: "sig" }] },
    async sign(claims, header = {}) {
      const input = `${encodeJson({ alg: "ES256", typ: "JWT", kid, ...header })}.${
        encodeJson({ iss, ...claims })
      }`;
      // Web Crypto's ECDSA signature is r || s, exactly the JWS form (RFC 7518 §3.4).
      const signature = await crypto.subtle.sign(
        ES256,
        privateKey,
        new TextEncoder().encode(input),
      );
      return `${input}.${base64url(new Uint8Array(signature))}`;
    },
  };
}

/** The current time in whole seconds, as JWT claims count it. */
export function nowSeconds(): number {
  return Math.floor(Date.now() / 1000);
}

/** What a relying party expects of a token. */
export interface JwtExpectations {
  iss: string;
  aud: string;
  /** Seconds since the epoch. */
  now?: number;
}

/**
 * Verifies a compact JWS against a JWKS and checks `iss`, `aud`, `exp` and `nbf`.
 *
 * @returns The claims.
 * @throws {Error} With a one-line reason when the token is not acceptable.
 */
export async function verifyJwt(
  token: string,
  jwks: Jwks,
  expected: JwtExpectations,
): Promise<Claims> {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("is not a compact JWS");
  const [headerPart, claimsPart, signaturePart] = parts as [string, string, string];
  let header: Record<string, unknown>;
  let claims: Claims;
  try {
    header = JSON.parse(new TextDecoder().decode(fromBase64url(headerPart)));
    claims = JSON.parse(new TextDecoder().decode(fromBase64url(claimsPart)));
  } catch {
    throw new Error("is not readable JSON");
  }
  if (header.alg !== "ES256") throw new Error(`uses alg "${header.alg}", not ES256`);
  const jwk = jwks.keys.find((key) => key.kid === header.kid);
  if (jwk === undefined) throw new Error(`names an unknown key "${header.kid}"`);
  const key = await crypto.subtle.importKey("jwk", jwk, ES256, false, ["verify"]);
  const valid = await crypto.subtle.verify(
    ES256,
    key,
    fromBase64url(signaturePart),
    new TextEncoder().encode(`${headerPart}.${claimsPart}`),
  );
  if (!valid) throw new Error("has a signature that does not verify");
  const now = expected.now ?? nowSeconds();
  if (claims.iss !== expected.iss) throw new Error(`has iss "${claims.iss}"`);
  const audiences = Array.isArray(claims.aud) ? claims.aud : [claims.aud];
  if (!audiences.includes(expected.aud)) throw new Error(`has aud "${claims.aud}"`);
  if (typeof claims.exp !== "number" || claims.exp <= now) throw new Error("has expired");
  if (typeof claims.nbf === "number" && claims.nbf > now) throw new Error("is not valid yet");
  return claims;
}
