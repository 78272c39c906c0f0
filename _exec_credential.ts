// `--format kubernetes`: the issued token as a client.authentication.k8s.io ExecCredential, which
// kubectl and the Kubernetes client libraries read from an exec credential plugin's stdout.
//
// Which apiVersion to answer in is read with the rest of the configuration (_cli_config.ts); this
// module is loaded only for `--format kubernetes`.

/** 9999-12-31T23:59:59Z, the last time RFC 3339 can write. */
const LAST_RFC3339_MS = 253_402_300_799_000;

/**
 * The ExecCredential for an issued token, as one line of JSON: `status.token`, and
 * `status.expirationTimestamp` (RFC 3339, UTC, whole seconds, rounded down) when the lifetime is
 * known, so that the client asks again before the token expires; without it, the client uses the
 * token until the server refuses it.
 *
 * @param apiVersion The apiVersion to answer in.
 * @param token The issued token (printable ASCII, checked).
 * @param expiresIn Its lifetime in seconds, if the token endpoint said.
 * @param now The current time in milliseconds since the epoch.
 * @returns The JSON text.
 */
export function execCredential(
  apiVersion: string,
  token: string,
  expiresIn: number | undefined,
  now: number,
): string {
  const status: Record<string, string> = { token };
  const expiry = expiresIn === undefined ? NaN : Math.floor(now / 1000 + expiresIn) * 1000;
  // A lifetime past what RFC 3339 can write (the year 9999) is as good as none.
  if (expiry <= LAST_RFC3339_MS) {
    status.expirationTimestamp = new Date(expiry).toISOString().replace(/\.\d+Z$/, "Z");
  }
  return JSON.stringify({ apiVersion, kind: "ExecCredential", status });
}
