// The floor for the whole-process benchmark: the least a Deno program can do to exchange a token.
// One fetch POST of the same request (form and headers) to the same endpoint, and print the token.
// With --start-only it stops before the fetch: Deno's start-up alone, for the realistic bench.

if (Deno.args[0] === "--start-only") Deno.exit(0);

const body = new URLSearchParams({
  grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
  subject_token: Deno.env.get("SUBJECT_TOKEN") ?? "",
  subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
});
const response = await fetch(Deno.args[0]!, {
  method: "POST",
  headers: { accept: "application/json", "user-agent": "token-exchange/floor" },
  body,
});
const { access_token } = await response.json();
console.log(access_token);
