// A self-signed certificate for 127.0.0.1, [::1] and localhost, for tests that need https on
// loopback (an https issuer, an HTTPS_PROXY that must not be used). Its key is public and protects
// nothing; it is valid from 2000 to 2100. Made with OpenSSL 3.0 (whose `req -x509` cannot set the
// start date) from a config holding the subject and these extensions:
//
//   subjectAltName = DNS:localhost,IP:127.0.0.1,IP:::1
//   basicConstraints = critical,CA:FALSE
//   keyUsage = critical,digitalSignature
//   extendedKeyUsage = serverAuth
//
//   openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out key.pem
//   openssl req -new -key key.pem -config ca.cnf -out req.csr
//   openssl ca -batch -config ca.cnf -selfsign -keyfile key.pem -in req.csr -notext \
//     -startdate 20000101000000Z -enddate 21000101000000Z -extensions ext -out cert.pem

/** The certificate (PEM), which a client trusts with `caCerts` or `deno run --cert`. */
export const TEST_CERT = `-----BEGIN CERTIFICATE-----
MIIByTCCAW+gAwIBAgIBATAKBggqhkjOPQQDAjAqMSgwJgYDVQQDDB90b2tlbi1l
eGNoYW5nZSB0ZXN0ICgxMjcuMC4wLjEpMCAXDTAwMDEwMTAwMDAwMFoYDzIxMDAw
MTAxMDAwMDAwWjAqMSgwJgYDVQQDDB90b2tlbi1leGNoYW5nZSB0ZXN0ICgxMjcu
MC4wLjEpMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEL68QuAwfgMFZU3S3fRrd
R5ExETE27xgaYSxXTULWOtWmRx++GvfQBMCgiYkuLcKZy97Pz1JfYEcN281LZ85y
GaOBgzCBgDAsBgNVHREEJTAjgglsb2NhbGhvc3SHBH8AAAGHEAAAAAAAAAAAAAAA
AAAAAAEwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4AwEwYDVR0lBAwwCgYI
KwYBBQUHAwEwHQYDVR0OBBYEFB76iRW+SkGgZhq+panNHqfUWYALMAoGCCqGSM49
BAMCA0gAMEUCIQDCA3XPiMtFWFnhq04kXI8qnN1WT70yuGl5wz37/kX99QIgMTSa
tnwJ3bOhg8ivIjZmz90WaG0O4eRBSiPxFQy/Jz0=
-----END CERTIFICATE-----
`;

/** Its private key (PEM). */
export const TEST_KEY = `-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQga5JiLQc8WDIq/UMI
E28p/Fwks1QDHlysxO/zPluE/gGhRANCAAQvrxC4DB+AwVlTdLd9Gt1HkTERMTbv
GBphLFdNQtY61aZHH74a99AEwKCJiS4twpnL3s/PUl9gRw3bzUtnznIZ
-----END PRIVATE KEY-----
`;

/** Writes the certificate to a file in a new temporary directory, for `deno run --cert`. */
export async function certFile(): Promise<{ path: string } & AsyncDisposable> {
  const dir = await Deno.makeTempDir({ prefix: "test-cert-" });
  const path = `${dir}/cert.pem`;
  await Deno.writeTextFile(path, TEST_CERT);
  return { path, [Symbol.asyncDispose]: () => Deno.remove(dir, { recursive: true }) };
}
