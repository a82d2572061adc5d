import { connect, createServer, type Server, type Socket } from "node:net";

/**
 * A TCP proxy between one server and PostgreSQL that forwards every byte,
 * until armed: then, in the first transaction that inserts into `executions`,
 * it forwards the simple-protocol `COMMIT` to PostgreSQL and closes the
 * client's socket before any answer is relayed. PostgreSQL commits; the
 * server never hears of it. It trips exactly once per `arm()`. `sever()` makes
 * the database unreachable for that one server.
 */
export interface CommitBreakingProxy {
  readonly port: number;
  /** The next COMMIT of a transaction that inserted an execution is cut off. */
  arm(): void;
  /** How many COMMITs were cut off so far. */
  readonly tripped: number;
  /** Closes every connection, and every new one at once, until `heal()`: the database is unreachable. */
  sever(): void;
  heal(): void;
  close(): Promise<void>;
}

export async function startCommitBreakingProxy(upstreamPort: number): Promise<CommitBreakingProxy> {
  let armed = false;
  let tripped = 0;
  let severed = false;
  const sockets = new Set<Socket>();
  const server: Server = createServer((client) => {
    if (severed) {
      client.destroy();
      return;
    }
    const upstream = connect(upstreamPort, "127.0.0.1");
    sockets.add(client);
    sockets.add(upstream);
    let cut = false;
    let startup = true;
    let pending = Buffer.alloc(0);
    let insertedExecution = false;
    const closeBoth = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on("close", () => {
      sockets.delete(client);
      if (!cut) upstream.destroy();
    });
    upstream.on("close", () => {
      sockets.delete(upstream);
      client.destroy();
    });
    client.on("error", () => undefined);
    upstream.on("error", () => closeBoth());
    upstream.on("data", (chunk: Buffer) => {
      if (!cut) client.write(chunk);
    });
    client.on("data", (chunk: Buffer) => {
      if (cut) return;
      pending = Buffer.concat([pending, chunk]);
      // Frontend messages: the first (startup, SSL request) is length-prefixed without a type byte.
      for (;;) {
        const headerSize = startup ? 4 : 5;
        if (pending.length < headerSize) return;
        const length = pending.readUInt32BE(startup ? 0 : 1);
        const total = startup ? length : length + 1;
        if (pending.length < total) return;
        const message = pending.subarray(0, total);
        pending = pending.subarray(total);
        if (startup) {
          startup = false;
          upstream.write(message);
          continue;
        }
        const type = String.fromCharCode(message[0] ?? 0);
        const text = type === "Q" || type === "P" ? message.subarray(5).toString("utf8") : "";
        if (type === "Q" && /^\s*BEGIN/i.test(text)) insertedExecution = false;
        if (type === "P" && /INSERT INTO executions/i.test(text)) insertedExecution = true;
        if (armed && insertedExecution && type === "Q" && /^\s*COMMIT\s*\0?$/i.test(text)) {
          armed = false;
          tripped++;
          cut = true;
          // PostgreSQL gets the COMMIT, then the end of the stream; the server gets nothing more.
          upstream.end(message);
          client.destroy();
          return;
        }
        upstream.write(message);
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const address = server.address();
  const port = typeof address === "object" && address !== null ? address.port : 0;
  return {
    port,
    arm: () => {
      armed = true;
    },
    get tripped() {
      return tripped;
    },
    sever: () => {
      severed = true;
      for (const socket of sockets) socket.destroy();
    },
    heal: () => {
      severed = false;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}
