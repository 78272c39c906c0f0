// Masking of secrets in text that came from a server or a subprocess before it is shown to anyone.

/** What a masked secret is replaced with. */
export const MASK = "***";

// A JWT, or the start of one (a server may echo a truncated token): a base64url JSON header
// (`eyJ` is `{"`) and whatever segments follow it.
const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}/g;

/** The shortest JWS signature masked on its own (an HMAC-SHA-256 one is 43 characters). */
const MIN_SIGNATURE_LENGTH = 16;

/**
 * Replaces every occurrence of the given secrets, and anything that looks like a JWT, with
 * {@linkcode MASK}. Each secret is also masked as a request carries it: form-encoded (a server
 * that echoes the request body) and percent-encoded; and a JWT's signature on its own, which with
 * the header and claims (not secret, and shown by debug output) would rebuild the token.
 *
 * @param text The text to clean.
 * @param secrets The secrets to mask; empty strings are ignored.
 * @returns The text with no secret left in it.
 */
export function maskSecrets(text: string, secrets: readonly string[] = []): string {
  const forms = new Set<string>();
  for (const secret of secrets) {
    forms.add(secret);
    forms.add(new URLSearchParams([["", secret]]).toString().slice(1));
    forms.add(encodeURIComponent(secret));
    const parts = secret.split(".");
    const signature = parts[2];
    if (parts.length === 3 && signature !== undefined && signature.length >= MIN_SIGNATURE_LENGTH) {
      forms.add(signature);
    }
  }
  let masked = text;
  // Longest first, so a secret that contains another is masked whole.
  for (const secret of [...forms].sort((a, b) => b.length - a.length)) {
    if (secret.length >= 3) masked = masked.replaceAll(secret, MASK);
  }
  return masked.replace(JWT_PATTERN, MASK);
}

/** The text on one line: each run of whitespace and control characters becomes one space. */
function flatten(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\s\x00-\x1f\x7f]+/g, " ").trim();
}

/**
 * Masks secrets, flattens the text onto one line (control characters included) and shortens it for an error message.
 *
 * @param text The text to summarise.
 * @param secrets The secrets to mask.
 * @param limit How many characters to keep.
 * @returns One line of at most `limit` characters (plus an ellipsis when shortened).
 */
export function summarise(text: string, secrets: readonly string[] = [], limit = 200): string {
  // Masked before flattening and again after, so that a secret echoed with a control character or
  // a line break where it has a space is not rebuilt by the flattening.
  const line = maskSecrets(flatten(maskSecrets(text, secrets)), secrets.map(flatten));
  return line.length > limit ? `${line.slice(0, limit)}…` : line;
}
