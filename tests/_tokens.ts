// Tokens for tests: JWT-shaped, with distinctive signatures so a leak of any part is easy to find.

function base64url(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)))
    .replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** A JWT with the given claims and a fake signature (never verified by the client). */
export function fakeJwt(
  claims: Record<string, unknown>,
  signature = "c2lnbmF0dXJlLW5ldmVyLXByaW50ZWQ",
): string {
  return `${base64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid: "test-key" }))}.${
    base64url(JSON.stringify(claims))
  }.${signature}`;
}

export const BUILDKITE_CLAIMS = {
  iss: "https://agent.buildkite.com",
  sub: "organization:acme:pipeline:deploy:ref:refs/heads/main:commit:9f31820:step:deploy",
  aud: "sts.example.com",
  iat: 1_700_000_000,
  nbf: 1_700_000_000,
  exp: 4_000_000_000,
  organization_slug: "acme",
  pipeline_slug: "deploy",
  job_id: "0184990a-477b-4fa8-9968-496074483cee",
};

/** The subject token the stand-in agent and the tests hand to the CLI. */
export const SUBJECT_TOKEN = fakeJwt(BUILDKITE_CLAIMS, "U1VCSkVDVC1TSUdOQVRVUkUtU0VDUkVU");
/** The signature part of SUBJECT_TOKEN, which must never be printed on its own either. */
export const SUBJECT_SIGNATURE = SUBJECT_TOKEN.split(".")[2]!;
/** A client secret with every character RFC 6749 §2.3.1 form-encoding must handle. */
export const CLIENT_SECRET = "s3cr:et%2F@/+ pass word";
/** The token the endpoint issues. */
export const ISSUED_TOKEN = fakeJwt(
  {
    iss: "https://sts.example.com",
    sub: "deployer",
    aud: "https://api.example.com",
    exp: 4_000_000_000,
  },
  "SVNTVUVELVNJR05BVFVSRS1TRUNSRVQ",
);

/** Every secret a test might leak, and the client secret as it is form-encoded. */
export const SECRETS: readonly string[] = [
  SUBJECT_TOKEN,
  SUBJECT_SIGNATURE,
  CLIENT_SECRET,
  new URLSearchParams([["", CLIENT_SECRET]]).toString().slice(1),
  ISSUED_TOKEN,
  ISSUED_TOKEN.split(".")[2]!,
];

/**
 * The forms a secret may leak in: as is, form-encoded (as a request body carries it) and, for a
 * JWT, its signature alone.
 */
export function secretForms(secrets: readonly string[]): string[] {
  const forms = new Set<string>();
  for (const secret of secrets) {
    forms.add(secret);
    forms.add(new URLSearchParams([["", secret]]).toString().slice(1));
    const parts = secret.split(".");
    if (parts.length === 3 && secret.startsWith("eyJ") && parts[2]!.length >= 16) {
      forms.add(parts[2]!);
    }
  }
  return [...forms];
}

/**
 * Fails if any secret appears in the text; `allowed` lists secrets this output may hold, `extra`
 * more secrets to look for (in every form {@linkcode secretForms} gives).
 */
export function assertNoSecrets(
  text: string,
  where: string,
  allowed: readonly string[] = [],
  extra: readonly string[] = [],
): void {
  for (const secret of [...SECRETS, ...secretForms(extra)]) {
    if (allowed.includes(secret)) continue;
    if (text.includes(secret)) {
      throw new Error(`${where} contains a secret (${secret.slice(0, 12)}…):\n${text}`);
    }
  }
}
