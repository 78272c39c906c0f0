// A scriptable token endpoint on 127.0.0.1 that speaks raw TCP, for faults an HTTP server library
// will not commit: a reset mid-body, a header that is sent but never honoured, bytes that are not
// HTTP, an answer that never comes. node:net rather than Deno.listen because only it can reset a
// connection (RST) on purpose.

import { Buffer } from "node:buffer";
import net from "node:net";

/** Answers one request on its socket; may write, wait, end, reset or do nothing at all. */
export type Reply = (socket: net.Socket, index: number) => void | Promise<void>;

export interface FaultServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>` */
  origin: string;
  /** `<origin>/token` */
  url: string;
  /** The body of every complete request, in order. */
  requests: string[];
  close(): Promise<void>;
}

const REASONS: Record<number, string> = {
  200: "OK",
  201: "Created",
  300: "Multiple Choices",
  301: "Moved Permanently",
  302: "Found",
  303: "See Other",
  304: "Not Modified",
  305: "Use Proxy",
  307: "Temporary Redirect",
  308: "Permanent Redirect",
  401: "Unauthorized",
  429: "Too Many Requests",
  502: "Bad Gateway",
  503: "Service Unavailable",
  504: "Gateway Timeout",
};

/** A status line and headers, as raw bytes. */
export function head(status: number, headers: Record<string, string | number> = {}): string {
  return `HTTP/1.1 ${status} ${REASONS[status] ?? "Status"}\r\n${
    Object.entries(headers).map(([name, value]) => `${name}: ${value}\r\n`).join("")
  }\r\n`;
}

/** A whole response with a `Content-Length`, after which the server closes the connection. */
export function send(
  status: number,
  headers: Record<string, string | number>,
  body: string | Uint8Array = "",
): Reply {
  const bytes = typeof body === "string" ? Buffer.from(body, "utf8") : Buffer.from(body);
  return (socket) => {
    socket.end(Buffer.concat([
      Buffer.from(
        head(status, { ...headers, "content-length": bytes.length, connection: "close" }),
      ),
      bytes,
    ]));
  };
}

/** A JSON response. */
export function json(status: number, body: string | Uint8Array): Reply {
  return send(status, { "content-type": "application/json" }, body);
}

/** Calls `write` every `ms` until the connection closes. */
export function every(socket: net.Socket, ms: number, write: () => void): void {
  const timer = setInterval(() => socket.writable ? write() : clearInterval(timer), ms);
  socket.on("close", () => clearInterval(timer));
}

/** Writes as fast as the client reads, until it closes the connection. */
export function flood(socket: net.Socket, chunk: Uint8Array): void {
  const pump = () => {
    while (socket.writable && socket.write(chunk));
  };
  socket.on("drain", pump);
  pump();
}

/** Starts the server; each complete request is handed to `reply` with its index. */
export async function startFaultServer(reply: Reply): Promise<FaultServer> {
  const sockets = new Set<net.Socket>();
  const requests: string[] = [];
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    let buffer = Buffer.alloc(0);
    const onData = (chunk: Buffer) => {
      buffer = Buffer.concat([buffer, chunk]);
      const end = buffer.indexOf("\r\n\r\n");
      if (end === -1) return;
      const headers = buffer.subarray(0, end).toString("latin1");
      const length = Number(/\r\ncontent-length:\s*(\d+)/i.exec(headers)?.[1] ?? 0);
      if (buffer.length < end + 4 + length) return;
      // One request per connection: every reply closes it, or leaves it to the client to close.
      socket.off("data", onData);
      requests.push(buffer.subarray(end + 4, end + 4 + length).toString("utf8"));
      Promise.resolve(reply(socket, requests.length - 1)).catch(() => socket.destroy());
    };
    socket.on("data", onData);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  let closed: Promise<void> | undefined;
  const close = () =>
    closed ??= new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return { origin, url: `${origin}/token`, requests, close, [Symbol.asyncDispose]: close };
}

/** An address on 127.0.0.1 where nothing listens. */
export function refusedUrl(): string {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const { port } = listener.addr;
  listener.close();
  return `http://127.0.0.1:${port}/token`;
}
