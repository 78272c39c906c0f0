// A scriptable token endpoint on 127.0.0.1 that speaks raw TCP, for faults an HTTP server library
// will not commit: a reset mid-body, a header that is sent but never honoured, bytes that are not
// HTTP, an answer that never comes. node:net rather than Deno.listen because only it can reset a
// connection (RST) on purpose.

import { Buffer } from "node:buffer";
import net from "node:net";
import tls from "node:tls";
import zlib from "node:zlib";
import { TEST_CERT, TEST_KEY } from "./_tls.ts";

/** A request's method and path, such as `GET /.well-known/openid-configuration`. */
export interface RequestLine {
  method: string;
  path: string;
}

/** Answers one request on its socket; may write, wait, end, reset or do nothing at all. */
export type Reply = (
  socket: net.Socket,
  index: number,
  request?: RequestLine,
) => void | Promise<void>;

export interface FaultServer extends AsyncDisposable {
  /** `http://127.0.0.1:<port>`, or `https://…` with `tls`. */
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

/** A whole response in one chunk of `Transfer-Encoding: chunked`, with no `Content-Length`. */
export function sendChunked(
  status: number,
  headers: Record<string, string | number>,
  body: Uint8Array,
): Reply {
  return (socket) => {
    socket.end(Buffer.concat([
      Buffer.from(
        head(status, { ...headers, "transfer-encoding": "chunked", connection: "close" }),
      ),
      Buffer.from(`${body.length.toString(16)}\r\n`),
      body,
      Buffer.from("\r\n0\r\n\r\n"),
    ]));
  };
}

/** A `Content-Encoding` a compression bomb can be made in. */
export type Encoding = "gzip" | "br" | "deflate" | "zstd";

/** Bits written least significant first, as DEFLATE (RFC 1951 §3.1.1) packs them. */
class BitWriter {
  bytes: Uint8Array;
  length = 0;
  constructor(capacity: number) {
    this.bytes = new Uint8Array(capacity);
  }
  /** Writes the low `count` bits of `value`, least significant first. */
  bits(value: number, count: number): void {
    for (let i = 0; i < count; i++) {
      if ((value >> i) & 1) this.bytes[this.length >> 3]! |= 1 << (this.length & 7);
      this.length++;
    }
  }
  /** Writes a Huffman code, most significant bit first (RFC 1951 §3.1.1). */
  code(value: number, count: number): void {
    for (let i = count - 1; i >= 0; i--) this.bits((value >> i) & 1, 1);
  }
  done(): Uint8Array {
    return this.bytes.subarray(0, (this.length + 7) >> 3);
  }
}

/**
 * A raw DEFLATE stream (RFC 1951) of at least `size` spaces, built by hand rather than by a
 * compressor, so that it is the same on every machine and costs nothing to make. One block with
 * dynamic Huffman codes for just three symbols (a space, a copy of 258 bytes, the end) and one
 * distance (1 byte back): each copy of 258 bytes takes 2 bits, as zlib's best does (1 : 1032).
 */
function deflateBomb(size: number): { deflated: Uint8Array; length: number } {
  const copies = Math.ceil((size - 1) / 258);
  const out = new BitWriter(64 + Math.ceil(copies / 4));
  out.bits(1, 1); // BFINAL
  out.bits(2, 2); // BTYPE 10: dynamic Huffman codes
  out.bits(286 - 257, 5); // HLIT: literal/length codes 0-285
  out.bits(1 - 1, 5); // HDIST: distance code 0 only
  out.bits(18 - 4, 4); // HCLEN: code length codes up to symbol 1 in the order below
  // Code length code lengths, in the order 16 17 18 0 8 7 9 6 10 5 11 4 12 3 13 2 14 1: symbol
  // 18 (a run of zeros) gets 1 bit ("0"), symbols 1 and 2 get 2 bits ("10", "11").
  for (const length of [0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2, 0, 2]) {
    out.bits(length, 3);
  }
  const zeros = (count: number) => {
    out.code(0b0, 1); // symbol 18: 11-138 zeros, 7 extra bits
    out.bits(count - 11, 7);
  };
  const length = (bits: number) => out.code(bits === 1 ? 0b10 : 0b11, 2); // symbols 1 and 2
  zeros(32); // literals 0-31
  length(2); // literal 32, " ": code "10"
  zeros(138); // literals 33-170
  zeros(85); // literals 171-255
  length(2); // 256, end of block: code "11"
  zeros(28); // lengths 257-284
  length(1); // 285, a copy of 258 bytes: code "0"
  length(1); // distance 0, 1 byte back: code "0"
  out.code(0b10, 2); // a literal space
  // Each copy is length code "0" then distance code "0": two zero bits, already there.
  out.length += copies * 2;
  out.code(0b11, 2); // end of block
  return { deflated: out.done(), length: 1 + copies * 258 };
}

/** The CRC-32 (gzip's check) of `length` spaces. */
function spacesCrc32(length: number): number {
  const MiB = Buffer.alloc(1024 * 1024, 0x20);
  let crc = 0;
  for (let left = length; left > 0; left -= MiB.length) {
    crc = zlib.crc32(left >= MiB.length ? MiB : MiB.subarray(0, left), crc);
  }
  return crc;
}

/** The Adler-32 (zlib's check, RFC 1950) of `length` spaces. */
function spacesAdler32(length: number): number {
  const n = BigInt(length);
  const a = (1n + 32n * n) % 65521n;
  const b = (n + 32n * (n * (n + 1n) / 2n)) % 65521n;
  return Number((b << 16n) | a);
}

/**
 * A Zstandard frame (RFC 8878) of at least `size` spaces: RLE blocks of 128 KiB, 4 bytes each.
 * Built by hand for the same reasons as {@linkcode deflateBomb}.
 */
function zstdBomb(size: number): Uint8Array {
  const BLOCK = 128 * 1024;
  const blocks = Math.ceil(size / BLOCK);
  const frame = new Uint8Array(6 + blocks * 4);
  frame.set([0x28, 0xb5, 0x2f, 0xfd, 0x00, 0x38]); // magic; no checksum or size; 128 KiB window
  for (let i = 0; i < blocks; i++) {
    const header = (BLOCK << 3) | (1 << 1) | (i === blocks - 1 ? 1 : 0); // RLE block
    frame.set([header & 0xff, (header >> 8) & 0xff, header >> 16, 0x20], 6 + i * 4);
  }
  return frame;
}

const bombs = new Map<string, Uint8Array>();

/**
 * A compression bomb: a valid body that decodes to `size` bytes of spaces (at least), in
 * `encoding`. gzip (RFC 1952) and deflate (zlib, RFC 1950) wrap {@linkcode deflateBomb}, zstd is
 * {@linkcode zstdBomb}, and br comes from the brotli compressor; each is made once per size.
 */
export function bomb(encoding: Encoding, size: number): Uint8Array {
  const key = `${encoding} ${size}`;
  let body = bombs.get(key);
  if (body === undefined) {
    switch (encoding) {
      case "gzip": {
        const { deflated, length } = deflateBomb(size);
        const trailer = Buffer.alloc(8);
        trailer.writeUInt32LE(spacesCrc32(length), 0);
        trailer.writeUInt32LE(length % 2 ** 32, 4);
        body = Buffer.concat([
          Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]),
          deflated,
          trailer,
        ]);
        break;
      }
      case "deflate": {
        const { deflated, length } = deflateBomb(size);
        const trailer = Buffer.alloc(4);
        trailer.writeUInt32BE(spacesAdler32(length), 0);
        body = Buffer.concat([Buffer.from([0x78, 0x01]), deflated, trailer]);
        break;
      }
      case "zstd":
        body = zstdBomb(size);
        break;
      case "br":
        body = zlib.brotliCompressSync(Buffer.alloc(size, 0x20), {
          params: { [zlib.constants.BROTLI_PARAM_QUALITY]: 4 },
        });
        break;
    }
    bombs.set(key, body);
  }
  return body;
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

/**
 * Starts the server; each complete request is handed to `reply` with its index and request line.
 * With `tls`, it speaks https with the test certificate ({@linkcode TEST_CERT}).
 */
export async function startFaultServer(
  reply: (socket: net.Socket, index: number, request: RequestLine) => void | Promise<void>,
  options: { tls?: boolean } = {},
): Promise<FaultServer> {
  const sockets = new Set<net.Socket>();
  const requests: string[] = [];
  const onConnection = (socket: net.Socket) => {
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
      const [method = "", path = ""] = headers.split("\r\n", 1)[0]!.split(" ");
      Promise.resolve(reply(socket, requests.length - 1, { method, path })).catch(() =>
        socket.destroy()
      );
    };
    socket.on("data", onData);
  };
  const server = options.tls
    ? tls.createServer({ cert: TEST_CERT, key: TEST_KEY }, onConnection)
    : net.createServer(onConnection);
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const origin = `${options.tls ? "https" : "http"}://127.0.0.1:${
    (server.address() as net.AddressInfo).port
  }`;
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
