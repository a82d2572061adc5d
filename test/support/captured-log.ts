import { Writable } from "node:stream";
import { pino } from "pino";
import { createBuiltinRegistry } from "../../src/actions/builtin.js";
import { loadServerConfig } from "../../src/config/server-config.js";
import { type RunningServer, startServer } from "../../src/server.js";
import { scratchDir } from "./test-server.js";

export interface LoggedServer {
  readonly server: RunningServer;
  /** Every log line so far (all levels, trace and up), parsed. */
  lines(): Record<string, unknown>[];
  /** Every log line so far, as written. */
  text(): string;
  close(): Promise<void>;
}

/** A real server in this process (own SQLite file, free loopback port) whose log is kept in memory. */
export async function startLoggedServer(env: Record<string, string> = {}): Promise<LoggedServer> {
  const dir = scratchDir();
  let text = "";
  const sink = new Writable({
    write(chunk: Buffer, _encoding, done) {
      text += chunk.toString("utf8");
      done();
    },
  });
  const actions = createBuiltinRegistry();
  const config = loadServerConfig(
    { OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db`, ...env },
    { host: "127.0.0.1", port: "0" },
    actions.names(),
  );
  const server = await startServer(config, pino({ level: "trace" }, sink), actions);
  return {
    server,
    text: () => text,
    lines: () =>
      text
        .split("\n")
        .filter((line) => line !== "")
        .map((line) => JSON.parse(line) as Record<string, unknown>),
    close: async () => {
      await server.shutdown();
      dir.cleanup();
    },
  };
}
