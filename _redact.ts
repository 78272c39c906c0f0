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

/** The shortest base64 run masked on its own: shorter ones match ordinary words too often. */
const MIN_BASE64_LENGTH = 8;

/** A string as a regular expression that matches it exactly. */
function literal(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

/** A string's escapes (`%2f`, `%252f`, `\u00e9`) as a pattern matching their hex in either case. */
function anyCaseHex(text: string): string {
  const anyCase = (hex: string) =>
    [...hex].map((d) => /\d/.test(d) ? d : `[${d.toLowerCase()}${d.toUpperCase()}]`).join("");
  return literal(text).replace(
    /(%(?:25)?)([0-9A-Fa-f]{2})|(\\\\u)([0-9A-Fa-f]{4})/g,
    (_, percent?: string, pair?: string, unicode?: string, quad?: string) =>
      percent !== undefined ? percent + anyCase(pair!) : unicode! + anyCase(quad!),
  );
}

/**
 * The base64 of a secret wherever it starts in what is encoded (at each of the three alignments),
 * in the standard and the URL alphabet: the characters that only the secret's bytes decide, and
 * the whole encoding, with and without padding, when it starts a value.
 */
function base64Forms(secret: string): string[] {
  const bytes = new TextEncoder().encode(secret);
  const forms: string[] = [];
  for (let offset = 0; offset < 3; offset++) {
    const padded = new Uint8Array(offset + bytes.length);
    padded.set(bytes, offset);
    const encoded = btoa(String.fromCharCode(...padded));
    // Character j holds bits 6j to 6j + 6: only the secret's when they lie within its bytes.
    const first = Math.ceil((8 * offset) / 6);
    const last = Math.floor((8 * (offset + bytes.length)) / 6);
    const core = encoded.slice(first, last);
    if (core.length >= MIN_BASE64_LENGTH) forms.push(core);
    if (offset === 0 && encoded.length >= MIN_BASE64_LENGTH) {
      forms.push(encoded, encoded.replace(/=+$/, ""));
    }
  }
  return forms.flatMap((form) => [form, form.replaceAll("+", "-").replaceAll("/", "_")]);
}

/**
 * Every form in which a server, a proxy or a tool may echo a secret, as patterns: as it is;
 * percent-encoded (hex in either case, with `/` left plain or not, form-encoded, or twice);
 * JSON-escaped (`\/`, `\u00e9` in either case, or not); base64 and base64url at every alignment,
 * with and without padding; and a JWT's signature on its own, which with the header and claims (not
 * secret, and shown by debug output) would rebuild the token.
 */
function secretForms(secret: string): string[] {
  const percent = encodeURIComponent(secret);
  const json = JSON.stringify(secret).slice(1, -1);
  const asciiJson = json.replace(
    /[^\p{ASCII}]/gu,
    (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`,
  );
  const formEncoded = new URLSearchParams([["", secret]]).toString().slice(1);
  const patterns = [
    formEncoded,
    percent,
    percent.replaceAll("%2F", "/"),
    encodeURI(secret),
    encodeURIComponent(percent),
    json,
    json.replaceAll("/", "\\/"),
    asciiJson,
    asciiJson.replaceAll("/", "\\/"),
  ].map(anyCaseHex);
  // Base64 of the secret, and of its form encoding, which HTTP Basic credentials carry.
  const encoded = new Set([...base64Forms(secret), ...base64Forms(formEncoded)]);
  patterns.push(literal(secret), ...[...encoded].map(literal));
  const parts = secret.split(".");
  const signature = parts[2];
  if (parts.length === 3 && signature !== undefined && signature.length >= MIN_SIGNATURE_LENGTH) {
    patterns.push(literal(signature));
  }
  return patterns;
}

/**
 * Replaces every occurrence of the given secrets, in every form they may be echoed in
 * ({@linkcode secretForms}), anything that looks like a JWT, and the value of every credential
 * field ({@linkcode CREDENTIAL_FIELDS}) with {@linkcode MASK}.
 *
 * @param text The text to clean.
 * @param secrets The secrets to mask; those shorter than three characters are ignored.
 * @returns The text with no secret left in it.
 */
export function maskSecrets(text: string, secrets: readonly string[] = []): string {
  const patterns = new Set<string>();
  for (const secret of secrets) {
    if (secret.length >= 3) { for (const pattern of secretForms(secret)) patterns.add(pattern); }
  }
  let masked = text;
  if (patterns.size > 0) {
    // Longest first, so that a secret that contains another is masked whole.
    const alternatives = [...patterns].sort((a, b) => b.length - a.length);
    masked = masked.replace(new RegExp(alternatives.join("|"), "g"), MASK);
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
