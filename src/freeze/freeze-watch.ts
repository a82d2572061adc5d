import type { Freeze, LedgerStore } from "../ledger/store.js";
import type { Logger } from "../log/logger.js";
import { isControlFileError, takeCommands } from "./control-file.js";
import { freezeOf } from "./freeze-scope.js";

/**
 * The freezes in force, as this process last read them from the ledger:
 * polled about once a second, so that a freeze set by `openexec freeze` (on
 * any replica's shared PostgreSQL, or through a SQLite ledger's control file)
 * stops executions everywhere within about a second. A failed read keeps the
 * last state and is logged: the ledger being unavailable refuses executions anyway.
 */
export class FreezeWatch {
  readonly #store: LedgerStore;
  readonly #logger: Logger;
  readonly #controlFile: string | undefined;
  #freezes: readonly Freeze[] = [];
  #timer: NodeJS.Timeout | undefined;
  #polling: Promise<void> | undefined;
  #failing = false;
  /** The control file's problem last logged: logged once while it persists, not every second. */
  #controlFileProblem: string | undefined;

  /** `controlFile`: a SQLite ledger's mailbox (control-file.ts); undefined for PostgreSQL. */
  constructor(store: LedgerStore, logger: Logger, controlFile: string | undefined) {
    this.#store = store;
    this.#logger = logger;
    this.#controlFile = controlFile;
  }

  /** Reads the freezes once (applying queued commands first), then every `intervalMs`. */
  async start(intervalMs = 1000): Promise<void> {
    await this.poll();
    this.#timer = setInterval(() => {
      this.#polling ??= this.poll().finally(() => {
        this.#polling = undefined;
      });
    }, intervalMs).unref();
  }

  /** Stops polling; resolves once a poll under way has finished (before the ledger closes). */
  async stop(): Promise<void> {
    clearInterval(this.#timer);
    await this.#polling;
  }

  /** The freeze that stops `action` now, if any. */
  frozenFor(action: string): Freeze | undefined {
    return freezeOf(this.#freezes, action);
  }

  /** Every freeze in force, by scope (for /health). */
  get freezes(): readonly Freeze[] {
    return this.#freezes;
  }

  async poll(): Promise<void> {
    try {
      await this.#applyControlFile();
      this.#controlFileProblem = undefined;
    } catch (error) {
      // Its path and what is wrong with it; never its contents.
      const problem = isControlFileError(error) ? error.problem : "error";
      const message = error instanceof Error ? error.message : String(error);
      if (`${problem} ${message}` !== this.#controlFileProblem) {
        this.#logger.error({ problem, err: message }, "freeze control file not applied");
      }
      this.#controlFileProblem = `${problem} ${message}`;
    }
    try {
      const before = this.#freezes.map((f) => f.scope).join(",");
      this.#freezes = await this.#store.freezes();
      const after = this.#freezes.map((f) => f.scope).join(",");
      if (after !== before) this.#logger.warn({ frozen: this.#freezes.map((f) => f.scope) }, "freezes changed");
      this.#failing = false;
    } catch (error) {
      // Once per run of failures: a ledger that stays unavailable must not flood the log.
      if (!this.#failing) {
        this.#logger.error({ err: error instanceof Error ? error.message : String(error) }, "reading freezes failed");
      }
      this.#failing = true;
    }
  }

  async #applyControlFile(): Promise<void> {
    if (this.#controlFile === undefined) return;
    for (const command of takeCommands(this.#controlFile)) {
      if (command.op === "freeze") {
        await this.#store.setFreeze({ scope: command.scope, reason: command.reason, frozenAtMs: command.frozenAtMs });
      } else await this.#store.clearFreeze(command.scope);
      this.#logger.warn({ op: command.op, scope: command.scope }, "freeze command applied");
    }
  }
}
