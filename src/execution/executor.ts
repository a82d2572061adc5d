import { createHash, timingSafeEqual } from "node:crypto";
import type { JsonObject } from "@bufbuild/protobuf";
import { Code } from "@connectrpc/connect";
import { ActionInputError, type AnyAction, isValidActionName } from "../actions/action.js";
import type { ActionRegistry } from "../actions/registry.js";
import type { ApprovalDecision, ApprovalGate } from "../approval/approval-gate.js";
import type { ApprovalSubject } from "../approval/verify-approval.js";
import { isRejection, Rejection } from "../errors/reason.js";
import { canonicalJsonDigest } from "../json/canonical-digest.js";
import { exceedsJsonDepth } from "../json/strict-json.js";
import type {
  Completion,
  Denial,
  ExecutionRecord,
  FinishedExecution,
  Freeze,
  LedgerStore,
  Reservation,
  ReserveOutcome,
} from "../ledger/store.js";
import { isStoreFailure } from "../ledger/store.js";
import { TimeOrderedIds } from "../ledger/time-ordered-id.js";
import type { Logger } from "../log/logger.js";
import { nonceCharacters, type RequestLimits } from "./request-limits.js";
import { runHandler } from "./run-handler.js";
import { storedResultMatchesReceipt } from "./stored-result.js";

/** An execution request, as every transport hands it over. */
export interface ExecuteCommand {
  readonly action: string;
  /** Undefined when the request carried no payload at all. */
  readonly payload: JsonObject | undefined;
  readonly nonce: string;
  /** The serialised approval envelope; empty when none was sent. */
  readonly approvalArtifact: Uint8Array;
}

/** What Execute answers: a finished execution, run now or earlier. */
export interface ExecuteOutcome {
  readonly execution: Exclude<FinishedExecution, { status: "interrupted" }>;
  /** True when the handler did not run for this request. */
  readonly replayed: boolean;
}

export interface ExecutorOptions {
  readonly store: LedgerStore;
  readonly actions: ActionRegistry;
  /** Undefined: every registered action may run. */
  readonly allowedActions: ReadonlySet<string> | undefined;
  readonly approvals: ApprovalGate;
  readonly tenantId: string;
  readonly limits: RequestLimits;
  readonly logger: Logger;
  /**
   * How long a duplicate of an execution still pending elsewhere (another
   * replica) waits for its outcome; then 409 in_progress. Default: the
   * handler timeout + 1 s.
   */
  readonly inProgressWaitMs?: number;
  /** The wall clock; injectable so tests can fix time. */
  readonly now?: () => Date;
  /** The operator's freezes (openexec freeze); undefined: nothing is ever frozen. */
  readonly freezes?: { frozenFor(action: string): Freeze | undefined };
}

interface Settled {
  readonly record: ExecutionRecord;
  /** The execution id this request reserved; undefined when it found one. */
  readonly reservedId: string | undefined;
}

/**
 * Decides and runs one request. `execute` is the whole hot path, top to
 * bottom: shape, action, authority, exactly-once, answer.
 */
export class Executor {
  readonly #options: ExecutorOptions;
  readonly #now: () => Date;
  /** Execution and attempt ids: UUIDv7, so the ledger's indexes grow at their right edge. */
  readonly #ids = new TimeOrderedIds();
  /** One in-flight run per (tenant, nonce) in this process; duplicates await it. */
  readonly #inflight = new Map<string, Promise<Settled>>();
  #draining = false;
  #idleWaiters: Array<() => void> = [];
  #running = 0;

  constructor(options: ExecutorOptions) {
    this.#options = options;
    this.#now = options.now ?? (() => new Date());
  }

  async execute(command: ExecuteCommand): Promise<ExecuteOutcome> {
    if (this.#draining) throw new Rejection("draining", "the server is shutting down; retry on another instance");
    const { tenantId, limits } = this.#options;

    // 1. Shape: the fields every request must have, within their limits (400, nothing recorded).
    const nonce = checkNonce(command.nonce, limits.maxNonceLength);
    const payload = checkPayload(command.payload, limits.maxJsonDepth);
    // 2. Action: registered (404), and its own validation of the payload (400).
    const action = this.#findAction(command.action);
    const parsed = parseInput(action, payload);
    const input = parsed instanceof Promise ? await parsed : parsed;
    const payloadDigest = canonicalJsonDigest(payload);
    // 3. Authority: a verified approval (clawshield mode), then the allow-list (403, recorded).
    const subject: ApprovalSubject = {
      tenantId,
      action: action.name,
      nonce,
      payloadDigest,
      artifact: command.approvalArtifact,
    };
    const now = this.#now();
    const decision = await this.#authorise(subject, now);
    // 4. Once: reserve the nonce (and consume the approval) durably, run, record.
    const reservation: Reservation = {
      executionId: this.#ids.next(),
      tenantId,
      nonce,
      action: action.name,
      payloadDigest,
      approval: decision.approved ? decision.use : undefined,
      logicalTime: now,
    };
    // While the operator has the action frozen, only a replay is answered; a new execution is denied.
    const freeze = this.#options.freezes?.frozenFor(action.name);
    const settled =
      freeze === undefined
        ? await this.#once(reservation, action, input)
        : await this.#replayWhileFrozen(reservation, subject.artifact);
    // 5. Answer: the outcome, if this request matches the one that owns the nonce.
    const { record } = settled;
    if (record.action !== action.name || !digestsEqual(record.payloadDigest, payloadDigest)) {
      throw new Rejection("nonce_reused", "this nonce was already used for a different action or payload");
    }
    if (record.status === "pending") {
      throw new Rejection("in_progress", "an execution with this nonce is still running; retry later");
    }
    if (record.status === "interrupted") {
      throw new Rejection("interrupted", "the execution with this nonce was interrupted and will not run again");
    }
    return { execution: record, replayed: settled.reservedId !== reservation.executionId };
  }

  /**
   * A frozen action runs nothing: a request whose nonce already has an
   * execution is answered from it (a replay is not an execution; step 5 still
   * compares fingerprints); any other is denied `frozen` and recorded with a
   * receipt, leaving its nonce unused for after the freeze.
   */
  async #replayWhileFrozen(reservation: Reservation, artifact: Uint8Array): Promise<Settled> {
    const existing = await guardStore(
      this.#options.store.find(reservation.tenantId, reservation.nonce),
      this.#options.logger,
    );
    if (existing !== undefined) return this.#settleExisting(existing);
    throw await this.#recordDenial(
      new Rejection("frozen", `action "${reservation.action}" is frozen by the operator; see /health`),
      {
        ...reservation,
        approvalDigest: artifact.length === 0 ? undefined : createHash("sha256").update(artifact).digest(),
      },
      reservation.logicalTime,
    );
  }

  /** Stops taking new executions; resolves when the running ones are recorded. */
  drain(): Promise<void> {
    this.#draining = true;
    if (this.#running === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  get draining(): boolean {
    return this.#draining;
  }

  #findAction(name: string): AnyAction {
    if (typeof name !== "string" || !isValidActionName(name)) {
      throw new Rejection(
        "action_invalid",
        'action must be 1-64 characters of lower-case dotted words, e.g. "echo" or "counter.add"',
      );
    }
    const action = this.#options.actions.get(name);
    if (action === undefined) throw new Rejection("unknown_action", `unknown action "${name}"`);
    return action;
  }

  /** The approval, then the allow-list. A refusal is recorded with a receipt and rethrown carrying it. */
  async #authorise(subject: ApprovalSubject, now: Date): Promise<ApprovalDecision> {
    try {
      const decision = await this.#options.approvals.check(subject, now);
      const allowed = this.#options.allowedActions;
      if (allowed !== undefined && !allowed.has(subject.action)) {
        throw new Rejection("action_not_allowed", `action "${subject.action}" is not in OPENEXEC_ALLOWED_ACTIONS`);
      }
      return decision;
    } catch (error) {
      if (isRejection(error) && error.code === Code.PermissionDenied) {
        const approvalDigest =
          subject.artifact.length === 0 ? undefined : createHash("sha256").update(subject.artifact).digest();
        throw await this.#recordDenial(error, { ...subject, approvalDigest }, now);
      }
      throw error;
    }
  }

  /**
   * Records a denied attempt. If even that fails the request is still denied
   * (fail closed), only without a receipt.
   */
  async #recordDenial(
    rejection: Rejection,
    attempt: Pick<Denial, "tenantId" | "nonce" | "action" | "payloadDigest" | "approvalDigest">,
    now: Date,
  ): Promise<Rejection> {
    const { store, logger } = this.#options;
    try {
      const denied = await store.recordDenial({
        ...attempt,
        attemptId: this.#ids.next(),
        reason: rejection.reason,
        logicalTime: now,
      });
      logger.info({ attemptId: denied.executionId, action: attempt.action, reason: rejection.reason }, "denied");
      return new Rejection(rejection.reason, rejection.message, {
        executionId: denied.executionId,
        receipt: denied.receipt,
      });
    } catch (error) {
      logger.error({ reason: rejection.reason, err: error instanceof Error ? error.name : "" }, "denial not recorded");
      return rejection;
    }
  }

  #once(reservation: Reservation, action: AnyAction, input: unknown): Promise<Settled> {
    const key = `${reservation.tenantId}\u0000${reservation.nonce}`;
    const current = this.#inflight.get(key);
    if (current !== undefined) return current;
    this.#running++;
    const run = this.#reserveAndRun(reservation, action, input).finally(() => {
      this.#inflight.delete(key);
      this.#running--;
      if (this.#running === 0) for (const wake of this.#idleWaiters.splice(0)) wake();
    });
    this.#inflight.set(key, run);
    return run;
  }

  async #reserveAndRun(reservation: Reservation, action: AnyAction, input: unknown): Promise<Settled> {
    const { store } = this.#options;
    if (action.effects === "ledger") {
      // Nothing outside the ledger happens when this handler runs: look for an
      // earlier execution, run, then reserve and record in one transaction.
      const existing = await guardStore(store.find(reservation.tenantId, reservation.nonce), this.#options.logger);
      if (existing !== undefined) return this.#settleExisting(existing);
      const outcome = await this.#run(reservation, action, input);
      const recorded = await guardStore(store.reserveAndComplete(reservation, outcome), this.#options.logger);
      if (recorded.kind !== "recorded") return this.#settleTaken(reservation, recorded);
      return this.#recorded(recorded.record, reservation);
    }
    const reserved = await guardStore(store.reserve(reservation), this.#options.logger);
    if (reserved.kind !== "reserved") return this.#settleTaken(reservation, reserved);
    // The handler stops when this process loses the lease (another replica may have recorded the
    // execution interrupted); `complete` then answers that recorded outcome, if there is one.
    const lease = store.leaseSignal(reservation.executionId);
    const outcome = await this.#run(reservation, action, input, [lease]);
    return this.#recorded(await this.#complete(reservation.executionId, outcome, lease.aborted), reservation);
  }

  /**
   * Records an external handler's outcome. When this process lost the lease,
   * the answer is whatever the ledger holds (another replica's `interrupted`,
   * or this outcome if none swept it yet), and the storage that could not be
   * reached (often why the lease was lost) is retried within the in-progress
   * bound rather than answered 503 at once. A retry is safe: `complete` of a
   * finished row answers that row.
   */
  async #complete(executionId: string, outcome: Completion, leaseLost: boolean): Promise<FinishedExecution> {
    const { store, logger } = this.#options;
    const deadline = Date.now() + this.#inProgressWaitMs();
    for (let delay = 50; ; delay = Math.min(delay * 2, 500)) {
      try {
        return await guardStore(store.complete(executionId, outcome), logger);
      } catch (error) {
        const unavailable = isRejection(error) && error.reason === "store_unavailable";
        if (!leaseLost || !unavailable || Date.now() + delay > deadline) throw error;
        await new Promise((resolve) => setTimeout(resolve, delay));
      }
    }
  }

  /** How long a request waits for an execution running elsewhere (OPENEXEC_IN_PROGRESS_WAIT_MS). */
  #inProgressWaitMs(): number {
    const { inProgressWaitMs, actions, limits } = this.#options;
    return inProgressWaitMs ?? actions.longestTimeoutMs(limits.handlerTimeoutMs) + 1000;
  }

  /** The nonce or the approval was already taken. */
  async #settleTaken(reservation: Reservation, taken: Exclude<ReserveOutcome, { kind: "reserved" }>): Promise<Settled> {
    if (taken.kind === "approval_used") {
      throw await this.#recordDenial(
        new Rejection("approval_reused", "this approval has already been used for another execution"),
        { ...reservation, approvalDigest: reservation.approval?.digest },
        reservation.logicalTime,
      );
    }
    return this.#settleExisting(taken.record);
  }

  async #settleExisting(record: ExecutionRecord): Promise<Settled> {
    const finished = record.status === "pending" ? await this.#awaitFinish(record, this.#inProgressWaitMs()) : record;
    // A replay serves the stored result only if it is still the one the receipt signs (fail closed).
    if (finished.status === "executed" && !storedResultMatchesReceipt(finished)) {
      this.#options.logger.error(
        { executionId: finished.executionId },
        "stored result does not match its receipt's result digest; not served",
      );
      throw new Rejection("store_unavailable", "the ledger is unavailable; retry later");
    }
    return { record: finished, reservedId: undefined };
  }

  /** Runs the handler under its limits; failures become a Completion, never a throw. */
  async #run(
    reservation: Reservation,
    action: AnyAction,
    input: unknown,
    alsoAbortOn: readonly AbortSignal[] = [],
  ): Promise<Completion> {
    const { limits, logger } = this.#options;
    const outcome = await runHandler(
      action,
      input,
      {
        executionId: reservation.executionId,
        nonce: reservation.nonce,
        tenantId: reservation.tenantId,
        logicalTime: reservation.logicalTime,
      },
      // A result may nest one level deeper than its payload: echo wraps the payload it returns.
      { timeoutMs: action.timeoutMs ?? limits.handlerTimeoutMs, maxResultDepth: limits.maxJsonDepth + 1 },
      alsoAbortOn,
    );
    if (outcome.ok) return { kind: "executed", effect: outcome.effect };
    const errorName = outcome.error instanceof Error ? outcome.error.name : typeof outcome.error;
    logger.warn(
      { executionId: reservation.executionId, action: action.name, reason: outcome.reason, error: errorName },
      "handler failed",
    );
    return { kind: "failed", reason: outcome.reason };
  }

  #recorded(record: FinishedExecution, reservation: Reservation): Settled {
    this.#options.logger.debug(
      { executionId: record.executionId, action: record.action, status: record.status },
      "execution recorded",
    );
    return { record, reservedId: reservation.executionId };
  }

  /**
   * Another process holds the reservation (a replica on the same PostgreSQL;
   * never the case for SQLite, where one process owns the file): wait for its
   * outcome, within a bound. The store wakes the wait when the execution
   * finishes (PostgreSQL: NOTIFY on commit); the row is re-read at least every
   * 200 ms either way, so a lost notification only costs latency.
   */
  async #awaitFinish(pending: ExecutionRecord, boundMs: number): Promise<ExecutionRecord> {
    const { store, logger } = this.#options;
    const deadline = Date.now() + boundMs;
    let delay = 10;
    for (let record = pending; ; ) {
      const left = deadline - Date.now();
      if (record.status !== "pending" || left <= 0) return record;
      await store.waitForFinish(record.executionId, Math.min(delay, left));
      delay = Math.min(delay * 2, 200);
      const found = await guardStore(store.find(record.tenantId, record.nonce), logger);
      if (found === undefined) throw new Rejection("store_unavailable", "the reservation disappeared");
      record = found;
    }
  }
}

function checkNonce(nonce: string, maxLength: number): string {
  if (typeof nonce !== "string" || nonce.length === 0 || nonce.length > maxLength || !nonceCharacters.test(nonce)) {
    throw new Rejection("nonce_invalid", `nonce must be 1-${maxLength} characters of A-Z a-z 0-9 . _ : -`);
  }
  return nonce;
}

function checkPayload(payload: JsonObject | undefined, maxDepth: number): JsonObject {
  if (payload === undefined || payload === null || typeof payload !== "object" || Array.isArray(payload)) {
    throw new Rejection("payload_invalid", "payload must be a JSON object");
  }
  if (exceedsJsonDepth(payload, maxDepth)) {
    throw new Rejection("body_too_deep", `payload nests deeper than ${maxDepth} levels`);
  }
  return payload;
}

/**
 * The action's own validation. An ActionInputError's message is a fixed text
 * the action chose (ActionInputError.because); it is the only part of the
 * error passed on, so the answer never quotes the payload. Any other throw is
 * a bug in the action and escapes as such (INTERNAL, logged by name only).
 */
function parseInput(action: AnyAction, payload: JsonObject): unknown {
  const refused = (error: unknown): never => {
    if (error instanceof ActionInputError) {
      throw new Rejection("action_input_invalid", `invalid payload for "${action.name}": ${error.message}`);
    }
    throw error;
  };
  try {
    const input = action.parseInput(payload);
    // A schema with asynchronous checks answers later; most answer at once, without a turn of the event loop.
    return input instanceof Promise ? input.catch(refused) : input;
  } catch (error) {
    return refused(error);
  }
}

function digestsEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

/**
 * Storage that cannot serve (StoreUnavailableError) surfaces as 503
 * `store_unavailable`. Anything else from the ledger is a broken invariant: it
 * is logged with its cause and answered as INTERNAL, never disguised as
 * unavailability.
 */
async function guardStore<T>(operation: Promise<T>, logger?: Logger): Promise<T> {
  try {
    return await operation;
  } catch (error) {
    if (isRejection(error)) throw error;
    if (isStoreFailure(error)) {
      throw new Rejection("store_unavailable", "the ledger is unavailable; retry later");
    }
    logger?.error(
      { err: error instanceof Error ? error.name : typeof error, problem: error instanceof Error ? error.message : "" },
      "ledger invariant broken",
    );
    throw error;
  }
}
