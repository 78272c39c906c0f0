// `--format kubernetes`: the issued token as a client.authentication.k8s.io ExecCredential, which
// kubectl and the Kubernetes client libraries read from an exec credential plugin's stdout.
//
// kubectl tells the plugin which apiVersion its kubeconfig's exec block asked for in the
// KUBERNETES_EXEC_INFO variable (an ExecCredential with only `spec`); without it, v1.

import { UsageError } from "./_cli_flags.ts";
import { decodeJson } from "./_json.ts";
import { summarise } from "./_redact.ts";

const GROUP = "client.authentication.k8s.io";

/** 9999-12-31T23:59:59Z, the last time RFC 3339 can write. */
const LAST_RFC3339_MS = 253_402_300_799_000;

/** The ExecCredential versions this command writes; kubectl 1.20 knows only v1beta1 of them. */
export const EXEC_CREDENTIAL_VERSIONS: readonly string[] = [`${GROUP}/v1`, `${GROUP}/v1beta1`];

/**
 * The apiVersion to answer in, from KUBERNETES_EXEC_INFO: the one it names, or v1 when it is unset.
 *
 * @param info The variable's value.
 * @returns The apiVersion.
 * @throws {UsageError} When the variable is not an ExecCredential naming a version written here.
 */
export function execCredentialApiVersion(info: string | undefined): string {
  if (info === undefined || info.trim() === "") return EXEC_CREDENTIAL_VERSIONS[0]!;
  const decoded = decodeJson(info);
  const apiVersion = decoded.kind === "object" ? decoded.object.apiVersion : undefined;
  if (typeof apiVersion !== "string") {
    throw new UsageError(
      "KUBERNETES_EXEC_INFO is not an ExecCredential with an apiVersion: unset it, or let kubectl set it",
    );
  }
  if (!EXEC_CREDENTIAL_VERSIONS.includes(apiVersion)) {
    throw new UsageError(
      `KUBERNETES_EXEC_INFO asks for apiVersion "${
        summarise(apiVersion, [], 100)
      }": set the kubeconfig's exec apiVersion to ${EXEC_CREDENTIAL_VERSIONS.join(" or ")}`,
    );
  }
  return apiVersion;
}

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
