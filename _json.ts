// Decoding a JSON object from bytes or text, the one way every reader here does it: a token
// response, issuer metadata, a JWT's header and claims, and the GitHub Actions token service's
// answer.

/** What a body decoded to: a JSON object, or which step it failed at. */
export type DecodedJson =
  | { kind: "object"; text: string; object: Record<string, unknown> }
  /** JSON, but not an object (an array, a string, a number, `true`, `false` or `null`). */
  | { kind: "other"; text: string; value: unknown }
  | { kind: "not-json"; text: string }
  | { kind: "not-utf8" };

/**
 * Reports whether a value is a JSON object: not `null`, not an array.
 *
 * @param value The value.
 * @returns `true` for an object.
 */
export function isJsonObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/**
 * Decodes a body as UTF-8 (strictly; a byte order mark is dropped, as RFC 8259 §8.1 allows) and
 * parses it as JSON.
 *
 * @param body The bytes, or text already decoded.
 * @returns The object, or what the body is instead.
 */
export function decodeJson(body: Uint8Array | string): DecodedJson {
  let text: string;
  if (typeof body === "string") {
    text = body;
  } else {
    try {
      text = new TextDecoder("utf-8", { fatal: true }).decode(body);
    } catch {
      return { kind: "not-utf8" };
    }
  }
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    return { kind: "not-json", text };
  }
  return isJsonObject(value)
    ? { kind: "object", text, object: value }
    : { kind: "other", text, value };
}

/**
 * The JSON object a body holds, or `undefined` if it holds anything else.
 *
 * @param body The bytes, or text already decoded.
 * @returns The object, or `undefined`.
 */
export function decodeJsonObject(body: Uint8Array | string): Record<string, unknown> | undefined {
  const decoded = decodeJson(body);
  return decoded.kind === "object" ? decoded.object : undefined;
}
