// Recording stand-ins on 127.0.0.1 for the services beyond RFC 8693, answering as the real ones do
// (their paths, fields, status codes and error shapes), each checking the exact wire format of
// what it is sent: Microsoft Entra ID (OpenID metadata and the v2.0 token endpoint, which takes a
// JWT client assertion), HashiCorp Vault (JWT login, revoke-self, and a secret to read with the
// token), octo-sts (/sts/exchange), the GitHub API (DELETE /installation/token) and an RFC 7009
// revocation endpoint. One server, https with tests/_tls.ts's certificate (MSAL insists on an
// https authority), so the plugin's ca-file and NODE_EXTRA_CA_CERTS name that certificate.

import { TEST_CERT, TEST_KEY } from "./_tls.ts";

/** One request as a stand-in saw it. */
export interface ServiceRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  body: string;
}

/** What each stand-in refuses, as the real service would. */
export interface Refusals {
  /** Entra's AADSTS error for a client assertion no federated credential matches. */
  entra?: boolean;
  /** Vault's 400 for a JWT that does not meet the role's bound claims. */
  vaultLogin?: boolean;
  /** Vault's 403 for a token it will not revoke. */
  vaultRevoke?: boolean;
  /** octo-sts's 403 when no trust policy matches. */
  octoSts?: boolean;
  /** GitHub's 401 for a token it does not know. */
  github?: boolean;
}

export interface Services extends AsyncDisposable {
  /** `https://127.0.0.1:<port>` */
  origin: string;
  /** Every request, in order. */
  requests: ServiceRequest[];
  /** The tokens each service issued, in order. */
  issued: { entra: string[]; vault: string[]; github: string[] };
  /** The tokens revoked, by which service. */
  revoked: { vault: string[]; github: string[]; oauth: string[] };
  /** What is refused from now on. */
  refuse: Refusals;
  close(): Promise<void>;
}

export const TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47";
export const CLIENT_ID = "5c1a7e64-8e29-4d7a-9f3a-1c6b4f0e2d11";
const ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

function mint(prefix: string, count: number): string {
  return `${prefix}${count}${crypto.randomUUID().replaceAll("-", "")}`;
}

/** The claims of a JWT, unverified. */
function claimsOf(token: string): Record<string, unknown> {
  try {
    const part = token.split(".")[1]!.replaceAll("-", "+").replaceAll("_", "/");
    return JSON.parse(atob(part.padEnd(part.length + (4 - part.length % 4) % 4, "=")));
  } catch {
    return {};
  }
}

/** What the stand-ins share: what they issued and revoked, what they refuse, their origin. */
interface State {
  origin: string;
  issued: Services["issued"];
  revoked: Services["revoked"];
  refuse: Refusals;
}

/** Microsoft Entra ID: its OpenID metadata, and the v2.0 token endpoint with a client assertion. */
function entra(state: State, path: string, form: URLSearchParams): Response {
  if (path === `/${TENANT}/v2.0/.well-known/openid-configuration`) {
    const base = `${state.origin}/${TENANT}`;
    return Response.json({
      token_endpoint: `${base}/oauth2/v2.0/token`,
      issuer: `https://login.microsoftonline.com/${TENANT}/v2.0`,
      authorization_endpoint: `${base}/oauth2/v2.0/authorize`,
      end_session_endpoint: `${base}/oauth2/v2.0/logout`,
      jwks_uri: `${base}/discovery/v2.0/keys`,
      response_types_supported: ["code"],
      subject_types_supported: ["pairwise"],
      id_token_signing_alg_values_supported: ["RS256"],
    });
  }
  const error = (code: string, description: string) =>
    Response.json({ error: code, error_description: description, error_codes: [700213] }, {
      status: 400,
    });
  if (
    form.get("grant_type") !== "client_credentials" ||
    form.get("client_assertion_type") !== ASSERTION_TYPE || form.get("client_id") !== CLIENT_ID
  ) {
    return error(
      "invalid_request",
      "AADSTS900144: The request body must contain client_assertion.",
    );
  }
  const sub = String(claimsOf(form.get("client_assertion") ?? "").sub);
  if (state.refuse.entra) {
    return error(
      "invalid_client",
      `AADSTS700213: No matching federated identity record found for presented assertion subject '${sub}'. Check your federated identity credential Subject, Audience and Issuer against the presented assertion.`,
    );
  }
  const token = mint("eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.entra", state.issued.entra.length);
  state.issued.entra.push(token);
  return Response.json({
    token_type: "Bearer",
    expires_in: 3599,
    ext_expires_in: 3599,
    access_token: token,
  });
}

/** Vault: the JWT login, revoke-self, and a secret to read with the token. */
function vault(state: State, request: ServiceRequest, path: string): Response {
  const errors = (status: number, ...messages: string[]) =>
    Response.json({ errors: messages }, { status });
  if (path.endsWith("/login")) {
    const body = JSON.parse(request.body || "{}");
    if (state.refuse.vaultLogin || body.role !== "deploy") {
      return errors(
        400,
        `error validating token: claim "sub" does not match any associated bound claim values`,
      );
    }
    const token = mint("hvs.CAESI", state.issued.vault.length);
    state.issued.vault.push(token);
    return Response.json({
      request_id: crypto.randomUUID(),
      auth: {
        client_token: token,
        accessor: mint("acc", 0),
        policies: ["default", "deploy"],
        lease_duration: 1200,
        renewable: true,
      },
    });
  }
  const token = request.headers["x-vault-token"] ?? "";
  if (!state.issued.vault.includes(token) || state.revoked.vault.includes(token)) {
    return errors(403, "permission denied");
  }
  if (path === "/v1/auth/token/revoke-self" && request.method === "POST") {
    if (state.refuse.vaultRevoke) return errors(403, "permission denied");
    state.revoked.vault.push(token);
    return new Response(null, { status: 204 });
  }
  if (path === "/v1/secret/data/app" && request.method === "GET") {
    return Response.json({ data: { data: { password: "the-app-secret" } } });
  }
  return errors(404, "unsupported path");
}

/** octo-sts's exchange, and the GitHub API's revocation of an installation token. */
function github(state: State, request: ServiceRequest, url: URL): Response {
  if (url.pathname === "/sts/exchange" && request.method === "GET") {
    const bearer = request.headers.authorization?.replace(/^Bearer /, "") ?? "";
    if (state.refuse.octoSts || claimsOf(bearer).iss === undefined) {
      return Response.json({ code: 7, message: "unable to find a matching trust policy" }, {
        status: 403,
      });
    }
    const token = mint("ghs_", state.issued.github.length);
    state.issued.github.push(token);
    return Response.json({ token });
  }
  if (url.pathname === "/installation/token" && request.method === "DELETE") {
    const token = request.headers.authorization?.replace(/^Bearer /, "") ?? "";
    if (state.refuse.github || !state.issued.github.includes(token)) {
      return Response.json({ message: "Bad credentials" }, { status: 401 });
    }
    state.revoked.github.push(token);
    return new Response(null, { status: 204 });
  }
  return Response.json({ message: "Not Found" }, { status: 404 });
}

/** Starts every stand-in on one https server on 127.0.0.1. */
export function startServices(): Services {
  const requests: ServiceRequest[] = [];
  const state: State = {
    origin: "",
    issued: { entra: [], vault: [], github: [] },
    revoked: { vault: [], github: [], oauth: [] },
    refuse: {},
  };
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, cert: TEST_CERT, key: TEST_KEY, onListen() {} },
    async (raw) => {
      const url = new URL(raw.url);
      const request: ServiceRequest = {
        method: raw.method,
        path: url.pathname + url.search,
        headers: Object.fromEntries(raw.headers),
        body: await raw.text(),
      };
      requests.push(request);
      if (url.pathname.startsWith(`/${TENANT}/`)) {
        return entra(state, url.pathname, new URLSearchParams(request.body));
      }
      if (url.pathname.startsWith("/v1/")) return vault(state, request, url.pathname);
      if (url.pathname === "/revoke" && raw.method === "POST") {
        state.revoked.oauth.push(new URLSearchParams(request.body).get("token") ?? "");
        return new Response(null, { status: 200 });
      }
      return github(state, request, url);
    },
  );
  const origin = state.origin = `https://127.0.0.1:${server.addr.port}`;
  const close = () => server.shutdown();
  const { issued, revoked, refuse } = state;
  return { origin, requests, issued, revoked, refuse, close, [Symbol.asyncDispose]: close };
}
