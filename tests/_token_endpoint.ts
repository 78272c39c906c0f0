// A token endpoint on 127.0.0.1 for tests: records every request and answers with a handler the
// test chooses. Stop it with `await using` or `close()`.

/** One request as the server saw it. */
export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string>;
  /** The form fields in order, repeated fields included. */
  form: [string, string][];
  body: string;
}

/** Answers a request; may be async and may hold the response back. */
export type Handler = (request: RecordedRequest, index: number) => Response | Promise<Response>;

export interface TokenEndpoint extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` (https with a certificate) */
  origin: string;
  /** `<origin>/token` */
  url: string;
  /** Every request received, in order. */
  requests: RecordedRequest[];
  /** Replaces the handler. */
  handle(handler: Handler): void;
  close(): Promise<void>;
}

/** A successful RFC 8693 response. */
export function tokenResponse(fields: Record<string, unknown> = {}): Response {
  return Response.json({
    access_token: "issued-access-token-0123456789",
    issued_token_type: "urn:ietf:params:oauth:token-type:access_token",
    token_type: "Bearer",
    expires_in: 3600,
    ...fields,
  });
}

/** An RFC 6749 §5.2 error response. */
export function oauthError(status: number, fields: Record<string, unknown>): Response {
  return Response.json(fields, { status, headers: { "cache-control": "no-store" } });
}

/**
 * Starts the endpoint on 127.0.0.1.
 *
 * @param handler How it answers.
 * @param tls Serves https with this certificate and key (PEM), as a private CA's endpoint would.
 */
export function startTokenEndpoint(
  handler: Handler = () => tokenResponse(),
  tls?: { cert: string; key: string },
): TokenEndpoint {
  let current = handler;
  const requests: RecordedRequest[] = [];
  const controller = new AbortController();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, signal: controller.signal, onListen() {}, ...tls },
    async (request) => {
      const body = await request.text();
      const url = new URL(request.url);
      const recorded: RecordedRequest = {
        method: request.method,
        path: url.pathname + url.search,
        headers: Object.fromEntries(request.headers),
        form: [...new URLSearchParams(body)],
        body,
      };
      requests.push(recorded);
      return await current(recorded, requests.length - 1);
    },
  );
  const origin = `${tls ? "https" : "http"}://127.0.0.1:${server.addr.port}`;
  const close = async () => {
    if (!controller.signal.aborted) controller.abort();
    await server.finished;
  };
  return {
    origin,
    url: `${origin}/token`,
    requests,
    handle(next) {
      current = next;
    },
    close,
    [Symbol.asyncDispose]: close,
  };
}
