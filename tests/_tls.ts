// A self-signed certificate for 127.0.0.1, [::1] and localhost, for tests that need https on
// loopback (an https issuer, an HTTPS_PROXY that must not be used). Its key is public and protects
// nothing; it is valid from 2026-11-26 for 100 years. Made with:
//
//   openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 36500 \
//     -subj "/CN=token-exchange test (127.0.0.1)" \
//     -addext "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1" \
//     -addext "basicConstraints=critical,CA:FALSE" -addext "keyUsage=critical,digitalSignature" \
//     -addext "extendedKeyUsage=serverAuth" -keyout key.pem -out cert.pem

/** The certificate (PEM), which a client trusts with `caCerts` or `deno run --cert`. */
export const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIB/DCCAaOgAwIBAgIUIvO4CD4LMdSVYhQw8MmMq0UbrAswCgYIKoZIzj0EAwIw
KjEoMCYGA1UEAwwfdG9rZW4tZXhjaGFuZ2UgdGVzdCAoMTI3LjAuMC4xKTAgFw0y
NjExMjYxMDUwMTBaGA8yMTI2MTEwMjEwNTAxMFowKjEoMCYGA1UEAwwfdG9rZW4t
ZXhjaGFuZ2UgdGVzdCAoMTI3LjAuMC4xKTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABNAuRoAjOZt7QF3aenDBZWmoY5QhvDyWKEuZx0vrz4ko3S39QEELcm/2QNVu
vuRx/v9wxOpzCzpPORJ0vuYJgjSjgaQwgaEwHQYDVR0OBBYEFHGPP8AvVbvrkuOW
vo6lw+Ojc92sMB8GA1UdIwQYMBaAFHGPP8AvVbvrkuOWvo6lw+Ojc92sMCwGA1Ud
EQQlMCOCCWxvY2FsaG9zdIcEfwAAAYcQAAAAAAAAAAAAAAAAAAAAATAMBgNVHRMB
Af8EAjAAMA4GA1UdDwEB/wQEAwIHgDATBgNVHSUEDDAKBggrBgEFBQcDATAKBggq
hkjOPQQDAgNHADBEAiA/JOvyJIkwLAMYWXbqSR++pxvvh6zJtXLwLkkANCvLuAIg
DmYxx4ed6L2Rkvo98oDgxhNgH/aHYpFJWMdE2Y9CfLE=
-----END CERTIFICATE-----
`;

/** Its private key (PEM). */
export const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg6FbtFyRXHMwXUH6S
FS/PoIcKP5UnvtXwP988xwWkKSihRANCAATQLkaAIzmbe0Bd2npwwWVpqGOUIbw8
lihLmcdL68+JKN0t/UBBC3Jv9kDVbr7kcf7/cMTqcws6TzkSdL7mCYI0
-----END PRIVATE KEY-----
`;

/** Writes the certificate to a file in a new temporary directory, for `deno run --cert`. */
export async function certFile(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "test-cert-" });
  const path = `${dir}/cert.pem`;
  await Deno.writeTextFile(path, TEST_CERT);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}
