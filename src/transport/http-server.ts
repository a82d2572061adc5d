import type { ServerHttp2Session } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { createServer, type Server } from "@httptoolkit/httpolyglot";
import type { NodeResponse } from "./http-errors.js";
import type { NodeRequest } from "./request-body.js";

export type RequestListener = (req: NodeRequest, res: NodeResponse) => void;

/**
 * One TCP port for HTTP/1.1 (REST, Connect, gRPC-web) and cleartext HTTP/2
 * with prior knowledge (gRPC, Connect). httpolyglot tells them apart by the
 * first bytes a client sends; Node's own allowHTTP1 needs TLS for that.
 */
export class PolyglotHttpServer {
  readonly #server: Server;
  readonly #sockets = new Set<Socket>();
  readonly #sessions = new Set<ServerHttp2Session>();
  #activeRequests = 0;
  #onIdle: (() => void) | undefined;

  constructor(listener: RequestListener) {
    this.#server = createServer((req, res) => {
      this.#activeRequests++;
      res.once("close", () => {
        this.#activeRequests--;
        if (this.#activeRequests === 0) this.#onIdle?.();
      });
      listener(req as NodeRequest, res as NodeResponse);
    });
    this.#server.on("connection", (socket: Socket) => {
      // httpolyglot accepts sockets itself, so Node's http servers never set
      // TCP_NODELAY on them; without it small h2c frames wait ~40 ms for ACKs.
      socket.setNoDelay(true);
      this.#sockets.add(socket);
      socket.once("close", () => this.#sockets.delete(socket));
    });
    this.#server.on("session", (session: ServerHttp2Session) => {
      this.#sessions.add(session);
      session.once("close", () => this.#sessions.delete(session));
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        resolve(this.#server.address() as AddressInfo);
      });
    });
  }

  /** Stops accepting connections; open ones keep being served. */
  stopAccepting(): void {
    this.#server.close();
    // Ask HTTP/2 clients to open no new streams here (GOAWAY); streams in flight finish.
    for (const session of this.#sessions) session.close();
  }

  /** Waits (at most `timeoutMs`) for requests in flight to be answered, then closes every connection. */
  async closeConnections(timeoutMs: number): Promise<void> {
    if (this.#activeRequests > 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.#onIdle = () => {
          clearTimeout(timer);
          resolve();
        };
      });
    }
    for (const session of this.#sessions) session.destroy();
    for (const socket of this.#sockets) socket.destroy();
  }
}
