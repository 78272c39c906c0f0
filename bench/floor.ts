// The floor for the whole-process benchmark: the least a Deno program can do to exchange a token,
// one fetch POST of the same form to the same endpoint, and print the token.

const body = new URLSearchParams({
  grant_type: "urn:ietf:params:oauth:grant-type:token-exchange",
  subject_token: Deno.env.get("SUBJECT_TOKEN") ?? "",
  subject_token_type: "urn:ietf:params:oauth:token-type:jwt",
});
const response = await fetch(Deno.args[0]!, { method: "POST", body });
const { access_token } = await response.json();
console.log(access_token);
