import { Server as Http1Server } from "node:http";
import { constants as http2Constants, type ServerHttp2Session, type ServerHttp2Stream } from "node:http2";
import type { AddressInfo, Socket } from "node:net";
import { createServer, type Server } from "@httptoolkit/httpolyglot";
import type { NodeRequest, NodeResponse, RequestListener } from "../http/node-http.js";
import type { Logger } from "../log/logger.js";

/** How long connections may take and how many there may be (docs/CONFIGURATION.md, "Connections"). */
export interface ConnectionLimits {
  /**
   * A new connection must show its protocol (the first bytes of an HTTP/1.1
   * request, or the whole HTTP/2 preface) within this; an HTTP/1.1 request must
   * have sent all its headers within this.
   */
  readonly headersTimeoutMs: number;
  /** A request, headers and body, must have been received within this (HTTP/1.1 and HTTP/2). */
  readonly requestTimeoutMs: number;
  /** HTTP/1.1: a connection idle between requests is closed after this. */
  readonly keepAliveTimeoutMs: number;
  /** HTTP/2: a session with no request in flight is closed (GOAWAY) after this, whatever else it sends. */
  readonly h2IdleTimeoutMs: number;
  /** Open connections at most. When full, a new one closes the oldest idle one, or is closed itself. */
  readonly maxConnections: number;
  /** HTTP/2: streams a session may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
  readonly maxStreamsPerSession: number;
}

export const defaultConnectionLimits: ConnectionLimits = {
  headersTimeoutMs: 10_000,
  requestTimeoutMs: 30_000,
  keepAliveTimeoutMs: 5_000,
  h2IdleTimeoutMs: 60_000,
  maxConnections: 900,
  maxStreamsPerSession: 100,
};

/**
 * True once the client has aborted the request (HTTP/1.1: closed the
 * connection; HTTP/2: reset the stream or closed the session). Ask only after
 * an unexpected failure: a request the server stopped reading counts too.
 */
export function clientWentAway(req: NodeRequest, res: NodeResponse): boolean {
  if (req.readableAborted) return true;
  if ("stream" in res) return res.stream.destroyed || timedOut.has(res.stream);
  return res.socket === null || res.socket.destroyed;
}

/** HTTP/2 streams this server reset because their request did not end in time: a slow client, not an error. */
const timedOut = new WeakSet<ServerHttp2Stream>();

/** One accepted TCP connection. */
interface Connection {
  readonly socket: Socket;
  /** Requests on it whose answer is not finished; a connection with none may be closed for a newcomer. */
  active: number;
  /** Until httpolyglot hands the socket to its HTTP/1.1 or HTTP/2 server. */
  protocolTimer: NodeJS.Timeout | undefined;
  session: ServerHttp2Session | undefined;
  idleTimer: NodeJS.Timeout | undefined;
}

/** Set on each accepted socket; readable through the proxies HTTP/2 puts in front of it. */
const connectionKey = Symbol("openexec.connection");
type Tagged = { [connectionKey]?: Connection };

/**
 * The connection under an HTTP/2 session. session.socket is a proxy that reads
 * the socket's own properties; the socket is httpolyglot's, or (since
 * httpolyglot marks its handle as no stream base) Node's JSStreamSocket
 * wrapped around it, which keeps the original as `stream`.
 */
function connectionOfSession(session: ServerHttp2Session): Connection | undefined {
  const socket = session.socket as Tagged & { stream?: Tagged };
  return socket[connectionKey] ?? socket.stream?.[connectionKey];
}

/** Operator-facing warnings that a client can provoke are logged at most this often. */
const warningIntervalMs = 60_000;

/**
 * One TCP port for HTTP/1.1 (REST, Connect, gRPC-web) and cleartext HTTP/2
 * with prior knowledge (gRPC, Connect). httpolyglot tells them apart by the
 * first bytes a client sends; Node's own allowHTTP1 needs TLS for that.
 *
 * No client can hold connections for long without sending requests (see
 * ConnectionLimits), and a client holding many idle ones cannot lock others
 * out: at the limit, a newcomer closes the oldest connection that has no
 * request in flight.
 */
export class PolyglotHttpServer {
  readonly #server: Server;
  readonly #limits: ConnectionLimits;
  readonly #logger: Logger | undefined;
  /** In accept order, oldest first. */
  readonly #connections = new Map<Socket, Connection>();
  readonly #sessions = new Set<ServerHttp2Session>();
  readonly #h2Connections = new WeakMap<ServerHttp2Session, Connection>();
  #activeRequests = 0;
  #onIdle: (() => void) | undefined;
  #evicted = 0;
  #lastWarning = Number.NEGATIVE_INFINITY;

  constructor(limits: ConnectionLimits, logger: Logger | undefined, listener: RequestListener) {
    this.#limits = limits;
    this.#logger = logger;
    this.#server = createServer(
      {
        http: {
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          keepAliveTimeout: limits.keepAliveTimeoutMs,
          // How often Node checks the two timeouts above.
          connectionsCheckingInterval: Math.min(1000, Math.ceil(limits.headersTimeoutMs / 2)),
        },
        http2: { settings: { maxConcurrentStreams: limits.maxStreamsPerSession } },
      },
      (req, res) => this.#serve(listener, req as NodeRequest, res as NodeResponse),
    );
    // Node's http.Server enforces headersTimeout and requestTimeout from a
    // timer it starts on "listening"; httpolyglot's inner HTTP/1.1 server
    // never listens itself (it is handed sockets), so start that timer here.
    const inner = (this.#server as unknown as { _httpServer?: unknown })._httpServer;
    if (!(inner instanceof Http1Server)) {
      throw new Error("httpolyglot's HTTP/1.1 server was not found: its timeouts could not be enforced");
    }
    inner.emit("listening");

    // Fires for every accepted socket, and again (httpolyglot forwards the
    // listener) when the socket is handed to the HTTP/1.1 or HTTP/2 server.
    this.#server.on("connection", (socket: Socket) => {
      const known = (socket as Tagged)[connectionKey];
      if (known === undefined) this.#admit(socket);
      else {
        clearTimeout(known.protocolTimer);
        known.protocolTimer = undefined;
      }
    });
    this.#server.on("session", (session: ServerHttp2Session) => {
      this.#sessions.add(session);
      session.once("close", () => this.#sessions.delete(session));
      const connection = connectionOfSession(session);
      if (connection === undefined) {
        // Not one of our sockets: it could escape every limit, so it is not served.
        session.destroy();
        return;
      }
      connection.session = session;
      this.#h2Connections.set(session, connection);
      this.#startIdleTimer(connection);
    });
  }

  listen(host: string, port: number): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      this.#server.once("error", reject);
      this.#server.listen(port, host, () => {
        this.#server.off("error", reject);
        // From now on a failed accept (e.g. EMFILE) is logged, not thrown.
        this.#server.on("error", (error: NodeJS.ErrnoException) =>
          this.#warn({ err: error.code ?? error.name }, "accepting a connection failed"),
        );
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
    for (const socket of this.#connections.keys()) socket.destroy();
  }

  #serve(listener: RequestListener, req: NodeRequest, res: NodeResponse): void {
    const connection =
      "stream" in req
        ? this.#h2Connections.get(req.stream.session as ServerHttp2Session)
        : (req.socket as Tagged)[connectionKey];
    if (connection !== undefined) {
      connection.active++;
      clearTimeout(connection.idleTimer);
      connection.idleTimer = undefined;
    }
    if ("stream" in req) this.#limitRequestTime(req.stream);
    this.#activeRequests++;
    res.once("close", () => {
      this.#activeRequests--;
      if (this.#activeRequests === 0) this.#onIdle?.();
      if (connection !== undefined) {
        connection.active--;
        if (connection.active === 0) this.#startIdleTimer(connection);
      }
    });
    listener(req, res);
  }

  #admit(socket: Socket): void {
    // httpolyglot accepts sockets itself, so Node's http servers never set
    // TCP_NODELAY on them; without it small h2c frames wait ~40 ms for ACKs.
    socket.setNoDelay(true);
    if (this.#connections.size >= this.#limits.maxConnections && !this.#evictIdle()) {
      socket.destroy();
      this.#warn({ maxConnections: this.#limits.maxConnections }, "connection limit reached, every connection busy");
      return;
    }
    const connection: Connection = {
      socket,
      active: 0,
      // Until it is handed on, a socket is httpolyglot's, which waits for its first bytes forever.
      protocolTimer: setTimeout(() => socket.destroy(), this.#limits.headersTimeoutMs).unref(),
      session: undefined,
      idleTimer: undefined,
    };
    (socket as Tagged)[connectionKey] = connection;
    this.#connections.set(socket, connection);
    socket.once("close", () => {
      clearTimeout(connection.protocolTimer);
      clearTimeout(connection.idleTimer);
      this.#connections.delete(socket);
    });
  }

  /** Closes the oldest connection without a request in flight; false if every one is busy. */
  #evictIdle(): boolean {
    for (const connection of this.#connections.values()) {
      if (connection.active > 0) continue;
      this.#connections.delete(connection.socket);
      connection.socket.destroy();
      this.#evicted++;
      this.#warn(
        { maxConnections: this.#limits.maxConnections, closed: this.#evicted },
        "connection limit reached, closing the oldest idle connections",
      );
      return true;
    }
    return false;
  }

  /** HTTP/2: a session with no request in flight is closed after h2IdleTimeoutMs, however busy its socket is. */
  #startIdleTimer(connection: Connection): void {
    const session = connection.session;
    if (session === undefined) return;
    clearTimeout(connection.idleTimer);
    connection.idleTimer = setTimeout(() => {
      session.close();
      // A stream the peer opened but never finished can hold a closing session open: not for long.
      if (!session.destroyed) setTimeout(() => session.destroy(), this.#limits.requestTimeoutMs).unref();
    }, this.#limits.h2IdleTimeoutMs).unref();
  }

  /** HTTP/2: a request whose body has not ended within requestTimeoutMs is reset (HTTP/1.1: Node does it). */
  #limitRequestTime(stream: ServerHttp2Stream): void {
    const timer = setTimeout(() => {
      if (stream.destroyed || stream.endAfterHeaders || stream.readableEnded) return;
      timedOut.add(stream);
      stream.close(http2Constants.NGHTTP2_CANCEL);
    }, this.#limits.requestTimeoutMs).unref();
    stream.once("close", () => clearTimeout(timer));
  }

  /** A warning a client can provoke at will: at most one a minute. */
  #warn(fields: Record<string, unknown>, message: string): void {
    const now = Date.now();
    if (now - this.#lastWarning < warningIntervalMs) return;
    this.#lastWarning = now;
    this.#logger?.warn(fields, message);
  }
}
