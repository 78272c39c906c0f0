// The real AWS client, for tests/_aws.ts: the AWS SDK for JavaScript v3's default credential chain
// (fromNodeProviderChain, which reads AWS_ROLE_ARN, AWS_WEB_IDENTITY_TOKEN_FILE and
// AWS_ROLE_SESSION_NAME and calls STS AssumeRoleWithWebIdentity), then STS GetCallerIdentity signed
// with what it got, both at AWS_ENDPOINT_URL_STS. One chain for the whole run: a later round waits
// until the credentials of the one before have expired (when that is at most 10 s away), so the SDK
// assumes the role again and reads the token file anew, as a long-lived process does. Each line on
// stdin is one round; the answer is { "accessKeyId", "expiration", "arn" } or { "error" } on
// stdout.

import { fromNodeProviderChain } from "@aws-sdk/credential-providers";
import { GetCallerIdentityCommand, STSClient } from "@aws-sdk/client-sts";
import { serveRounds } from "./_client_process.ts";

const provider = fromNodeProviderChain();
let expiration: Date | undefined;
await serveRounds(async () => {
  const wait = expiration === undefined ? 0 : expiration.getTime() - Date.now() + 50;
  if (wait > 0 && wait <= 10_000) await new Promise((resolve) => setTimeout(resolve, wait));
  const credentials = await provider();
  expiration = credentials.expiration;
  const identity = await new STSClient({ credentials }).send(new GetCallerIdentityCommand({}));
  return {
    accessKeyId: credentials.accessKeyId,
    expiration: expiration?.toISOString(),
    arn: identity.Arn,
  };
});
