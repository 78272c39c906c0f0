// A stand-in proxy for tests of what reaches a proxy named in the environment.

import net from "node:net";
import { json, startFaultServer } from "./_fault_server.ts";
import { certFile } from "./_tls.ts";
import { startTokenEndpoint, tokenResponse } from "./_token_endpoint.ts";
import { ISSUED_TOKEN } from "./_tokens.ts";

/** A stand-in proxy on 127.0.0.1: records what each connection sends, and refuses it. */
export async function startProxy() {
  const received: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on("close", () => sockets.delete(socket));
    socket.on("error", () => {});
    socket.once("data", (data) => {
      received.push(data.toString("latin1"));
      socket.end("HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const url = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  const close = () =>
    new Promise<void>((resolve) => {
      for (const socket of sockets) socket.destroy();
      server.close(() => resolve());
    });
  return {
    url,
    received,
    /** The first line of each request: `CONNECT host:port HTTP/1.1`, `POST http://… HTTP/1.1`. */
    lines: () => received.map((text) => text.split("\r\n", 1)[0]),
    [Symbol.asyncDispose]: close,
  };
}

/**
 * Two loopback token endpoints that issue ISSUED_TOKEN, for the tests that name a proxy: plain
 * http, and https with the test certificate (trust `cert.path`, with --cert or DENO_CERT).
 */
export async function startLoopbackEndpoints() {
  const plain = startTokenEndpoint(() => tokenResponse({ access_token: ISSUED_TOKEN }));
  const tls = await startFaultServer(
    (socket) => json(200, JSON.stringify({ access_token: ISSUED_TOKEN }))(socket, 0),
    { tls: true },
  );
  const cert = await certFile();
  return {
    plain,
    tls,
    cert,
    /** The TLS endpoint's port. */
    port: new URL(tls.origin).port,
    async [Symbol.asyncDispose]() {
      await cert[Symbol.asyncDispose]();
      await tls[Symbol.asyncDispose]();
      await plain[Symbol.asyncDispose]();
    },
  };
}
