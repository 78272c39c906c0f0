// A real RFC 8693 token endpoint for interop tests: @jmondi/oauth2-server's AuthorizationServer
// with its built-in TokenExchangeGrant, behind its own Fetch API ("vanilla") adapter, on 127.0.0.1.
// The same loopback server plays the subject token's OIDC issuer: it publishes the issuer's JWKS,
// and the grant's validator fetches that JWKS and verifies each subject token with Web Crypto
// (signature, iss, aud, exp, nbf), as a real STS does with a CI system's OIDC tokens.
//
// The repositories are the in-memory ones the library's documentation shows.

import {
  AuthorizationServer,
  ErrorType,
  type GrantIdentifier,
  type OAuthClient,
  OAuthException,
  type OAuthScope,
  type OAuthToken,
  type OAuthUser,
  type ProcessTokenExchangeArgs,
} from "@jmondi/oauth2-server";
import {
  handleVanillaError,
  requestFromVanilla,
  responseToVanilla,
} from "@jmondi/oauth2-server/vanilla";
import { type Claims, createIssuer, type JwtIssuer, nowSeconds, verifyJwt } from "./_signing.ts";
import { CLIENT_SECRET } from "./_tokens.ts";

const TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange";

/** The `aud` the server requires of subject tokens. */
export const STS_AUDIENCE = "https://sts.interop.test";
/** The `iss` of the tokens the server issues. */
export const STS_ISSUER = "https://sts.interop.test/";
/** The `iss` of the subject tokens it trusts. */
export const SUBJECT_ISSUER = "https://agent.buildkite.com";
/** The scopes the server knows. */
export const SCOPES = ["deploy", "read"] as const;

/** The clients the server knows. */
export const CLIENTS = {
  /** A confidential client whose secret form-encoding leaves unchanged. */
  deployer: { id: "ci-deployer", secret: "deployer-secret-7c1f3a9e" },
  /** A confidential client whose secret has characters form-encoding changes, but no ":". */
  spaced: { id: "ci-spaced", secret: "pass word/+7c1f" },
  /** A confidential client whose secret also has ":". */
  colon: { id: "ci-colon", secret: CLIENT_SECRET },
  /** A public client (no secret). */
  public: { id: "ci-public" },
} as const;

/** Every client secret, for the secret checks. */
export const CLIENT_SECRETS: readonly string[] = [
  CLIENTS.deployer.secret,
  CLIENTS.spaced.secret,
  CLIENTS.colon.secret,
];

/** The Buildkite-like claims of a good subject token. */
export function subjectClaims(overrides: Claims = {}): Claims {
  const now = nowSeconds();
  return {
    sub: "organization:acme:pipeline:deploy:ref:refs/heads/main:commit:9f31820:step:deploy",
    aud: STS_AUDIENCE,
    iat: now,
    nbf: now,
    exp: now + 300,
    organization_slug: "acme",
    pipeline_slug: "deploy",
    ...overrides,
  };
}

/** What the grant's validator was asked to accept, with the subject token's verified claims. */
export interface ExchangeSeen {
  audience: string | undefined;
  resource: string | undefined;
  scopes: string[];
  requestedTokenType: string | undefined;
  subjectTokenType: string;
  /** The verified claims, or the reason the subject token was refused. */
  subject: Claims | { refused: string };
}

/** A response as the server sent it. */
export interface ResponseSeen {
  status: number;
  headers: Record<string, string>;
  body: Record<string, unknown>;
}

export interface Oauth2Server extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** The token endpoint, `<origin>/token`. */
  url: string;
  /** The subject token issuer, whose JWKS is at `<origin>/.well-known/jwks.json`. */
  issuer: JwtIssuer;
  /** Signs a subject token with `subjectClaims(overrides)`. */
  subjectToken(overrides?: Claims): Promise<string>;
  /** Every token exchange the grant's validator saw, in order. */
  exchanges: ExchangeSeen[];
  /** Every token endpoint response, in order. */
  responses: ResponseSeen[];
  close(): Promise<void>;
}

function clientRepository() {
  const clients = new Map<string, OAuthClient>(
    Object.values(CLIENTS).map((client) => [client.id, {
      id: client.id,
      name: client.id,
      secret: "secret" in client ? client.secret : null,
      redirectUris: [],
      allowedGrants: [TOKEN_EXCHANGE],
      scopes: SCOPES.map((name) => ({ name })),
    }]),
  );
  return {
    // The library checks for a missing client itself ("if (!client) throw invalidClient()").
    getByIdentifier: (id: string) => Promise.resolve(clients.get(id) as OAuthClient),
    isClientValid(grantType: GrantIdentifier, client: OAuthClient, secret?: string) {
      if (client.secret && client.secret !== secret) return Promise.resolve(false);
      return Promise.resolve(client.allowedGrants.includes(grantType));
    },
  };
}

const scopeRepository = {
  getAllByIdentifiers: (names: string[]) =>
    Promise.resolve(
      names.filter((name) => (SCOPES as readonly string[]).includes(name)).map((name) => ({
        name,
      })),
    ),
  finalize: (scopes: OAuthScope[]) => Promise.resolve(scopes),
};

function tokenRepository() {
  const tokens: OAuthToken[] = [];
  return {
    issueToken(client: OAuthClient, scopes: OAuthScope[], user?: OAuthUser | null) {
      return Promise.resolve<OAuthToken>({
        accessToken: crypto.randomUUID(),
        accessTokenExpiresAt: new Date(Date.now() + 3_600_000),
        client,
        user,
        scopes,
      });
    },
    issueRefreshToken: (token: OAuthToken) => Promise.resolve(token),
    persist(token: OAuthToken) {
      tokens.push(token);
      return Promise.resolve();
    },
    revoke: () => Promise.resolve(),
    isRefreshTokenRevoked: () => Promise.resolve(false),
    getByRefreshToken(refreshToken: string) {
      const token = tokens.find((t) => t.refreshToken === refreshToken);
      return token ? Promise.resolve(token) : Promise.reject(new Error("unknown refresh token"));
    },
  };
}

/** Starts the server on 127.0.0.1; stop it with `await using` or `close()`. */
export async function startOauth2Server(): Promise<Oauth2Server> {
  const issuer = await createIssuer(SUBJECT_ISSUER);
  const exchanges: ExchangeSeen[] = [];
  const responses: ResponseSeen[] = [];
  let origin = "";

  async function processTokenExchange(args: ProcessTokenExchangeArgs): Promise<OAuthUser> {
    const seen: Omit<ExchangeSeen, "subject"> = {
      audience: args.audience,
      resource: args.resource,
      scopes: args.scopes.map((scope) => scope.name),
      requestedTokenType: args.requestedTokenType,
      subjectTokenType: args.subjectTokenType,
    };
    let claims: Claims;
    try {
      // The JWKS is fetched as an STS fetches its trusted issuer's jwks_uri.
      const jwks = await (await fetch(`${origin}/.well-known/jwks.json`)).json();
      claims = await verifyJwt(args.subjectToken, jwks, { iss: SUBJECT_ISSUER, aud: STS_AUDIENCE });
    } catch (error) {
      const reason = `subject_token ${(error as Error).message}`;
      exchanges.push({ ...seen, subject: { refused: reason } });
      // RFC 8693 §2.2.2: an unacceptable subject token is an invalid_request.
      throw new OAuthException("Invalid subject token", ErrorType.InvalidRequest, reason);
    }
    exchanges.push({ ...seen, subject: claims });
    return { id: String(claims.sub) };
  }

  const authorizationServer = new AuthorizationServer(
    clientRepository(),
    tokenRepository(),
    scopeRepository,
    `hs256-key-${crypto.randomUUID()}`,
    { issuer: STS_ISSUER },
  );
  authorizationServer.enableGrantType({ grant: TOKEN_EXCHANGE, processTokenExchange });

  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {} },
    async (request) => {
      const { pathname } = new URL(request.url);
      if (request.method === "GET" && pathname === "/.well-known/jwks.json") {
        return Response.json(issuer.jwks);
      }
      if (request.method !== "POST" || pathname !== "/token") {
        return new Response("Not Found", { status: 404 });
      }
      let response: Response;
      try {
        response = responseToVanilla(
          await authorizationServer.respondToAccessTokenRequest(await requestFromVanilla(request)),
        );
      } catch (error) {
        response = responseToVanilla(handleVanillaError(error));
      }
      responses.push({
        status: response.status,
        headers: Object.fromEntries(response.headers),
        body: await response.clone().json(),
      });
      return response;
    },
  );
  origin = `http://127.0.0.1:${server.addr.port}`;
  const close = async () => {
    if (!controller.signal.aborted) controller.abort();
    await server.finished;
  };
  return {
    origin,
    url: `${origin}/token`,
    issuer,
    subjectToken: (overrides) => issuer.sign(subjectClaims(overrides)),
    exchanges,
    responses,
    close,
    [Symbol.asyncDispose]: close,
  };
}
