// Text from outside (a server, a subprocess, a token's claims) made safe to show: secrets masked,
// and flattened onto one line so that it cannot forge a log line. The one owner of both rules.

/** What a masked secret is replaced with. */
export const MASK = "***";

// A JWT, or the start of one (a server may echo a truncated token): a base64url JSON header
// (`eyJ` is `{"`) and whatever segments follow it.
const JWT_PATTERN = /eyJ[A-Za-z0-9_-]{4,}(?:\.[A-Za-z0-9_-]*){0,2}/g;

/** The shortest JWS signature masked on its own (an HMAC-SHA-256 one is 43 characters). */
const MIN_SIGNATURE_LENGTH = 16;

/** The fields whose values are credentials, wherever a server quotes them. */
export const CREDENTIAL_FIELDS: readonly string[] = [
  "access_token",
  "refresh_token",
  "id_token",
  "subject_token",
  "actor_token",
  "client_secret",
  "assertion",
  "client_assertion",
];

// Lower case, as OAuth spells them, and not the end of a longer name (STS_ID_TOKEN).
const NAME = `(?<![A-Za-z0-9_])(?:${CREDENTIAL_FIELDS.join("|")})`;
// The name, quoted or not (or quoted in JSON escaped inside a JSON string), then `:` (JSON, text)
// or `=` (a form or query, where a space after it ends an empty value).
const KEY = `${NAME}(?:\\\\?["'])?(?:\\s*:\\s*|=)`;
// "value" or 'value', with escapes; an unterminated one (a body cut short) is masked to its end.
const QUOTED_VALUE = new RegExp(`(${KEY})(["'])(?:\\\\.|(?!\\2)[^\\\\])*\\2?`, "g");
// \"value\", in JSON escaped inside a JSON string (an error_description that quotes a body).
const ESCAPED_VALUE = new RegExp(`(${KEY})\\\\(["'])(?:(?!\\\\\\2).)*(?:\\\\\\2)?`, "g");
// name=value in a form body or a query, or name: value in text.
const PLAIN_VALUE = new RegExp(`(${KEY})(?![\\\\"'])[^\\s&"'<>,;#)}\\]\\\\]+`, "g");

/** Replaces the value of every credential field (JSON, form-encoded, query or plain text). */
function maskFields(text: string): string {
  return text
    .replace(ESCAPED_VALUE, `$1\\$2${MASK}\\$2`)
    .replace(QUOTED_VALUE, `$1$2${MASK}$2`)
    .replace(PLAIN_VALUE, `$1${MASK}`);
}

/**
 * Replaces every occurrence of the given secrets, anything that looks like a JWT, and the value
 * of every credential field ({@linkcode CREDENTIAL_FIELDS}) with {@linkcode MASK}. Each secret is
 * also masked as a request carries it: form-encoded (a server that echoes the request body) and
 * percent-encoded; and a JWT's signature on its own, which with the header and claims (not
 * secret, and shown by debug output) would rebuild the token.
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
  return maskFields(masked).replace(JWT_PATTERN, MASK);
}

/**
 * The text on one line: each run of whitespace and control characters (C0 with tab, CR and LF,
 * DEL, C1 with NEL and CSI, and the Unicode line and paragraph separators) becomes one space. What
 * comes out cannot end a log line, start a new one or steer a terminal, so text from outside
 * printed after a prefix cannot pass for a line the tool wrote (`^^^ +++`, `~~~`, `token-exchange:`).
 * Invisible format characters (Unicode's Cf: bidi controls such as U+202E, zero-width ones such as
 * U+200B) are written as their code (`\u202e`), so that nothing reorders or hides what is shown.
 *
 * @param text The text to flatten.
 * @returns The text on one line, trimmed.
 */
export function oneLine(text: string): string {
  return text
    // deno-lint-ignore no-control-regex
    .replace(/[\s\x00-\x1f\x7f-\x9f]+/g, " ")
    // Invisible format characters (bidi controls, zero-width ones) could make the line read as
    // other than it is: shown by their code instead.
    .replace(/\p{Cf}/gu, (c) => `\\u${c.codePointAt(0)!.toString(16).padStart(4, "0")}`)
    .trim();
}

/**
 * Masks secrets, flattens the text onto one line ({@linkcode oneLine}) and shortens it: the form
 * in which any text from outside reaches a message.
 *
 * @param text The text to summarise.
 * @param secrets The secrets to mask.
 * @param limit How many characters to keep.
 * @returns One line of at most `limit` characters (plus an ellipsis when shortened).
 */
export function summarise(text: string, secrets: readonly string[] = [], limit = 200): string {
  // Masked before flattening and again after, so that a secret echoed with a control character or
  // a line break where it has a space is not rebuilt by the flattening.
  const line = maskSecrets(oneLine(maskSecrets(text, secrets)), secrets.map(oneLine));
  return line.length > limit ? `${line.slice(0, limit)}…` : line;
}
