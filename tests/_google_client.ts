// The real Google client, for tests/_google.ts: google-auth-library's Application Default
// Credentials, found through GOOGLE_APPLICATION_CREDENTIALS as every Google tool finds them. One
// client for the whole run, so a later round shows how the library refreshes by itself. Each line on
// stdin asks for an access token; the answer is { "token": … } or { "error": … } on stdout.

import { GoogleAuth } from "google-auth-library";
import { serveRounds } from "./_client_process.ts";

const auth = new GoogleAuth({ scopes: ["https://www.googleapis.com/auth/cloud-platform"] });
await serveRounds(async () => ({ token: await auth.getAccessToken() }));
