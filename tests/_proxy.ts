// A stand-in proxy for tests of what reaches a proxy named in the environment.

import net from "node:net";

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
