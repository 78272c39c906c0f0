// The real Azure client, for tests/beyond_test.ts: @azure/identity's WorkloadIdentityCredential,
// configured only by the variables the plugin exports (AZURE_CLIENT_ID, AZURE_TENANT_ID,
// AZURE_FEDERATED_TOKEN_FILE, AZURE_AUTHORITY_HOST), with instance discovery off (its metadata
// comes from the stand-in authority). Each line on stdin is one round: it asks for an Azure
// Resource Manager token and answers { "token", "expiresOnTimestamp" } or { "error" } on stdout.

import { WorkloadIdentityCredential } from "@azure/identity";
import { serveRounds } from "./_client_process.ts";

const credential = new WorkloadIdentityCredential({ disableInstanceDiscovery: true });
await serveRounds(async () => {
  const token = await credential.getToken("https://management.azure.com/.default");
  return { token: token.token, expiresOnTimestamp: token.expiresOnTimestamp };
});
