// Just enough JOSE for the demo, with Web Crypto: sign and verify compact JWS (RS256, ES256).

const encoder = new TextEncoder();

export function base64url(bytes: Uint8Array | string): string {
  const data = typeof bytes === "string" ? encoder.encode(bytes) : bytes;
  let binary = "";
  for (const byte of data) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

export function fromBase64url(text: string): Uint8Array<ArrayBuffer> {
  const base64 = text.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(base64.padEnd(base64.length + ((4 - (base64.length % 4)) % 4), "="));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

type Alg = "RS256" | "ES256";

const ALGORITHMS = {
  RS256: {
    generate: {
      name: "RSASSA-PKCS1-v1_5",
      modulusLength: 2048,
      publicExponent: new Uint8Array([1, 0, 1]),
      hash: "SHA-256",
    },
    import: { name: "RSASSA-PKCS1-v1_5", hash: "SHA-256" },
    sign: { name: "RSASSA-PKCS1-v1_5" },
  },
  ES256: {
    generate: { name: "ECDSA", namedCurve: "P-256" },
    import: { name: "ECDSA", namedCurve: "P-256" },
    sign: { name: "ECDSA", hash: "SHA-256" },
  },
} as const;

export async function generateKeyPair(alg: Alg): Promise<CryptoKeyPair> {
  return await crypto.subtle.generateKey(ALGORITHMS[alg].generate, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
}

export async function importPrivateKey(jwk: JsonWebKey, alg: Alg): Promise<CryptoKey> {
  return await crypto.subtle.importKey("jwk", jwk, ALGORITHMS[alg].import, false, ["sign"]);
}

/** Signs claims as a compact JWS. */
export async function signJwt(
  claims: Record<string, unknown>,
  key: CryptoKey,
  alg: Alg,
  kid: string,
): Promise<string> {
  const input = `${base64url(JSON.stringify({ alg, typ: "JWT", kid }))}.${
    base64url(JSON.stringify(claims))
  }`;
  const signature = await crypto.subtle.sign(ALGORITHMS[alg].sign, key, encoder.encode(input));
  return `${input}.${base64url(new Uint8Array(signature))}`;
}

/** A JWKS entry for a public key. */
export async function publicJwk(
  key: CryptoKey,
  alg: Alg,
  kid: string,
): Promise<JsonWebKey & { kid: string }> {
  const jwk = await crypto.subtle.exportKey("jwk", key);
  return {
    kty: jwk.kty,
    n: jwk.n,
    e: jwk.e,
    crv: jwk.crv,
    x: jwk.x,
    y: jwk.y,
    alg,
    use: "sig",
    kid,
  };
}

/**
 * Verifies a compact JWS against a JWKS and returns its claims, or throws an Error that says why.
 */
export async function verifyJwt(
  token: string,
  jwks: { keys: (JsonWebKey & { kid: string })[] },
): Promise<Record<string, unknown>> {
  const parts = token.split(".");
  if (parts.length !== 3) throw new Error("the token is not a compact JWS");
  const [headerPart, claimsPart, signaturePart] = parts as [string, string, string];
  const header = JSON.parse(new TextDecoder().decode(fromBase64url(headerPart)));
  const jwk = jwks.keys.find((key) => key.kid === header.kid);
  if (!jwk || (header.alg !== "RS256" && header.alg !== "ES256") || jwk.alg !== header.alg) {
    throw new Error(`no key "${header.kid}" for ${header.alg} in the issuer's JWKS`);
  }
  const alg = header.alg as Alg;
  const key = await crypto.subtle.importKey("jwk", jwk, ALGORITHMS[alg].import, false, ["verify"]);
  const ok = await crypto.subtle.verify(
    ALGORITHMS[alg].sign,
    key,
    fromBase64url(signaturePart),
    encoder.encode(`${headerPart}.${claimsPart}`),
  );
  if (!ok) throw new Error("the signature does not match the issuer's JWKS");
  return JSON.parse(new TextDecoder().decode(fromBase64url(claimsPart)));
}
