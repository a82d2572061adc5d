/**
 * A replica for tests: `openexec serve` (src/cli/serve-command.ts) with the
 * built-in actions plus one test-only external action, `test.slow`, which
 * sleeps `payload.ms` and returns {"ok": true}. Its nonce is reserved before
 * it runs, so a replica killed meanwhile leaves a pending row behind.
 * Run as `node --import tsx test/support/replica-main.ts`; configured by the
 * environment only; prints "listening on URL" to stderr like `openexec serve`.
 */
import type { Action } from "../../src/actions/action.js";
import { ActionInputError } from "../../src/actions/action.js";
import { builtinActions } from "../../src/actions/builtin.js";
import { ActionRegistry } from "../../src/actions/registry.js";
import { ConfigError, loadServerConfig } from "../../src/config/server-config.js";
import { createLogger } from "../../src/log/logger.js";
import { startServer } from "../../src/server.js";

const slowAction: Action<{ ms: number }> = {
  name: "test.slow",
  effects: "external",
  summary: "test only: waits payload.ms, then returns {ok: true}",
  parseInput: (payload) => {
    const ms = payload.ms ?? 0;
    if (typeof ms !== "number" || !Number.isInteger(ms) || ms < 0) throw ActionInputError.because("ms: an integer");
    return { ms };
  },
  run: async ({ ms }, context) => {
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, ms);
      context.signal.addEventListener("abort", () => {
        clearTimeout(timer);
        resolve();
      });
    });
    return { kind: "result", result: { ok: true } };
  },
};

async function main(): Promise<number> {
  const actions = new ActionRegistry();
  for (const action of [...builtinActions, slowAction]) actions.register(action);
  actions.seal();
  let config: ReturnType<typeof loadServerConfig>;
  try {
    config = loadServerConfig(
      process.env,
      { host: "127.0.0.1", port: process.env.OPENEXEC_PORT ?? "0" },
      actions.names(),
    );
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`openexec: ${error.message}\n`);
      return 2;
    }
    throw error;
  }
  const logger = createLogger(config.logLevel);
  let server: Awaited<ReturnType<typeof startServer>>;
  try {
    server = await startServer(config, logger, actions);
  } catch (error) {
    process.stderr.write(`openexec: ${error instanceof Error ? error.message : String(error)}\n`);
    return 1;
  }
  process.stderr.write(`openexec replica listening on ${server.url}\n`);
  await new Promise<void>((resolve) => {
    process.once("SIGTERM", () => resolve());
    process.once("SIGINT", () => resolve());
  });
  await server.shutdown();
  logger.flush();
  return 0;
}

process.exitCode = await main();
