/**
 * A replica for tests: `openexec serve` (src/cli/serve-command.ts) with the
 * built-in actions plus two test-only external actions. `test.slow` sleeps
 * `payload.ms` and returns {"ok": true}. Its nonce is reserved before it
 * runs, so a replica killed meanwhile leaves a pending row behind.
 * `test.fenced` is an external effect fenced by its signal: it waits
 * `payload.ms` (heeding nothing but time), then, unless its signal is aborted,
 * appends its execution id as a line to OPENEXEC_TEST_EFFECTS_FILE.
 * Run as `node --import tsx test/support/replica-main.ts` (or compiled, from
 * .build/: see ./entry.ts); configured by the
 * environment only (OPENEXEC_PORT for the port); it is `openexec serve` itself.
 */
import { appendFileSync } from "node:fs";
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

const effectsFile = process.env.OPENEXEC_TEST_EFFECTS_FILE;

const fencedAction: Action<{ ms: number }> = {
  name: "test.fenced",
  effects: "external",
  summary: "test only: waits payload.ms, then appends its execution id to OPENEXEC_TEST_EFFECTS_FILE unless aborted",
  inputSchema: anyObjectSchema,
  parseInput: slowAction.parseInput,
  run: async ({ ms }, context) => {
    await new Promise<void>((resolve) => setTimeout(resolve, ms));
    // The fence: right before the effect, and synchronously with it.
    if (context.signal.aborted) throw context.signal.reason;
    if (effectsFile === undefined) throw new Error("OPENEXEC_TEST_EFFECTS_FILE is not set");
    appendFileSync(effectsFile, `${context.executionId}\n`);
    return { kind: "result", result: { done: true } };
  },
};

const actions = new ActionRegistry();
for (const action of [...builtinActions, slowAction, fencedAction]) actions.register(action);
actions.seal();
try {
  process.exitCode = await serveCommand(["--host", "127.0.0.1", "--port", process.env.OPENEXEC_PORT ?? "0"], actions);
} catch (error) {
  // As bin/openexec reports a start-up failure: one line, exit 1.
  process.stderr.write(`openexec: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exitCode = 1;
}
