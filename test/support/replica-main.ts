/**
 * A replica for tests: `openexec serve` (src/cli/serve-command.ts) with the
 * built-in actions plus one test-only external action, `test.slow`, which
 * sleeps `payload.ms` and returns {"ok": true}. Its nonce is reserved before
 * it runs, so a replica killed meanwhile leaves a pending row behind.
 * Run as `node --import tsx test/support/replica-main.ts`; configured by the
 * environment only (OPENEXEC_PORT for the port); it is `openexec serve` itself.
 */
import { type Action, ActionInputError, anyObjectSchema } from "../../src/actions/action.js";
import { builtinActions } from "../../src/actions/builtin.js";
import { ActionRegistry } from "../../src/actions/registry.js";
import { serveCommand } from "../../src/cli/serve-command.js";

const slowAction: Action<{ ms: number }> = {
  name: "test.slow",
  effects: "external",
  summary: "test only: waits payload.ms, then returns {ok: true}",
  inputSchema: anyObjectSchema,
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

const actions = new ActionRegistry();
for (const action of [...builtinActions, slowAction]) actions.register(action);
actions.seal();
try {
  process.exitCode = await serveCommand(["--host", "127.0.0.1", "--port", process.env.OPENEXEC_PORT ?? "0"], actions);
} catch (error) {
  // As bin/openexec reports a start-up failure: one line, exit 1.
  process.stderr.write(`openexec: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
