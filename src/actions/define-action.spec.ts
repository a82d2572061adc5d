import assert from "node:assert/strict";
import { describe, it } from "node:test";
import { ActionInputError, type ExecutionContext } from "./action.js";
import { defineAction, LedgerEffect, ResultSchemaError } from "./define-action.js";
import { ActionDefinitionError } from "./input-schema.js";
import { z } from "./zod.js";

const context: ExecutionContext = {
  executionId: "0190b2a4-0000-7000-8000-000000000000",
  nonce: "n-1",
  tenantId: "demo",
  logicalTime: new Date(0),
  signal: new AbortController().signal,
};

/** The message a refused payload gets, or undefined when it is accepted. */
async function refusal(action: ReturnType<typeof defineAction>, payload: Record<string, unknown>) {
  try {
    await action.parseInput(payload as never);
    return undefined;
  } catch (error) {
    assert.ok(error instanceof ActionInputError, `expected an ActionInputError, got ${String(error)}`);
    return error.message;
  }
}

const ticket = defineAction({
  name: "ticket.create",
  summary: "opens a ticket",
  effects: "external",
  input: z.strictObject({
    title: z.string().min(1).max(10),
    priority: z.enum(["low", "high"]),
    tags: z.array(z.string().max(3)).max(2).optional(),
    labels: z.record(z.string(), z.number()).optional(),
    assignee: z.strictObject({ email: z.email() }).optional(),
  }),
  output: z.strictObject({ ticketId: z.string() }),
  timeoutMs: 1500,
  run: ({ title }) => ({ ticketId: `T-${title.length}` }),
});

describe("defineAction", () => {
  it("publishes the input and output JSON Schemas (2020-12), strict", () => {
    assert.equal(ticket.inputSchema.$schema, "https://json-schema.org/draft/2020-12/schema");
    assert.equal(ticket.inputSchema.type, "object");
    assert.equal(ticket.inputSchema.additionalProperties, false);
    assert.deepEqual(ticket.inputSchema.required, ["title", "priority"]);
    assert.deepEqual(ticket.outputSchema, {
      $schema: "https://json-schema.org/draft/2020-12/schema",
      type: "object",
      properties: { ticketId: { type: "string" } },
      required: ["ticketId"],
      additionalProperties: false,
    });
    assert.equal(ticket.timeoutMs, 1500);
    assert.equal(ticket.effects, "external");
  });

  it("accepts a payload the schema accepts", async () => {
    assert.deepEqual(await ticket.parseInput({ title: "x", priority: "low" }), { title: "x", priority: "low" });
  });

  it("refuses an unknown field without naming it", async () => {
    const message = await refusal(ticket, { title: "x", priority: "low", sneaky_field: 1 });
    assert.equal(message, "unexpected field");
  });

  it("names declared fields and the schema's bounds, never the values", async () => {
    const secret = "TOPSECRETVALUE";
    const message = await refusal(ticket, { title: secret, priority: 7 });
    assert.equal(message, 'title: at most 10 characters; priority: expected one of "low", "high"');
    assert.ok(!message?.includes(secret));
    assert.equal(await refusal(ticket, { priority: "low" }), "title: expected a string");
    assert.equal(
      await refusal(ticket, { title: "x", priority: "low", assignee: { email: "not-an-email" } }),
      "assignee.email: expected an email",
    );
  });

  it("writes array positions and map keys without quoting the payload", async () => {
    assert.equal(
      await refusal(ticket, { title: "x", priority: "low", tags: ["ok", "toolong"] }),
      "tags[1]: at most 3 characters",
    );
    const message = await refusal(ticket, { title: "x", priority: "low", labels: { "private-key-name": "v" } });
    assert.equal(message, "labels[*]: expected a number");
  });

  it("counts the issues it does not name", async () => {
    const message = await refusal(ticket, { title: 1, priority: 2, tags: 3, labels: 4, assignee: 5 });
    assert.match(message ?? "", / \(and 2 more\)$/);
  });

  it("passes an ActionInputError thrown by a refinement on as its fixed text", async () => {
    const guarded = defineAction({
      name: "guarded",
      summary: "refines",
      effects: "ledger",
      input: z.strictObject({ n: z.number() }).refine(({ n }) => {
        if (n > 10) throw ActionInputError.because("n is too large for this action");
        return true;
      }),
      run: ({ n }) => ({ n }),
    });
    assert.equal(await refusal(guarded, { n: 11 }), "n is too large for this action");
    assert.equal(await refusal(guarded, { n: 1 }), undefined);
  });

  it("describes a refinement's own message generically (it may quote the input)", async () => {
    const refined = defineAction({
      name: "refined",
      summary: "refines",
      effects: "ledger",
      input: z.strictObject({ n: z.number() }).refine(({ n }) => n < 10, { error: "got a bad n" }),
      run: ({ n }) => ({ n }),
    });
    assert.equal(await refusal(refined, { n: 11 }), "does not match the action's input schema");
  });

  it("validates asynchronous schemas", async () => {
    const later = defineAction({
      name: "later",
      summary: "checks later",
      effects: "ledger",
      input: z.strictObject({ n: z.number() }).refine(async ({ n }) => n > 0),
      run: ({ n }) => ({ n }),
    });
    assert.equal(await refusal(later, { n: -1 }), "does not match the action's input schema");
    assert.deepEqual(await later.parseInput({ n: 1 }), { n: 1 });
  });

  it("checks results against the output schema, and passes ledger effects through", async () => {
    assert.deepEqual(await ticket.run({ title: "ab", priority: "low" }, context), {
      kind: "result",
      result: { ticketId: "T-2" },
    });
    const liar = defineAction({
      name: "liar",
      summary: "returns what it promised not to",
      effects: "ledger",
      input: z.strictObject({}),
      output: z.strictObject({ ok: z.boolean() }),
      run: () => ({ ok: "yes" }) as never,
    });
    await assert.rejects(async () => liar.run({}, context), ResultSchemaError);
    const counter = defineAction({
      name: "count",
      summary: "counts",
      effects: "ledger",
      input: z.strictObject({}),
      run: () => LedgerEffect.counterAdd("k", 2),
    });
    assert.deepEqual(await counter.run({}, context), { kind: "counter_add", key: "k", delta: 2 });
  });

  it("refuses, at definition, schemas that let unknown fields through or do not describe an object", () => {
    const base = { summary: "s", effects: "ledger" as const, run: () => null };
    assert.throws(
      () => defineAction({ ...base, name: "loose", input: z.object({ a: z.string() }) }),
      (error: unknown) => error instanceof ActionDefinitionError && /unknown fields through at \$/.test(error.message),
    );
    assert.throws(
      () => defineAction({ ...base, name: "nested", input: z.strictObject({ inner: z.object({ a: z.string() }) }) }),
      /unknown fields through at \$\.properties\.inner/,
    );
    assert.throws(
      () => defineAction({ ...base, name: "scalar", input: z.string() as never }),
      /must describe a JSON object/,
    );
  });

  it("refuses bad names, summaries, effects and time limits at definition", () => {
    const base = { summary: "s", effects: "ledger" as const, input: z.strictObject({}), run: () => null };
    assert.throws(() => defineAction({ ...base, name: "Bad Name" }), ActionDefinitionError);
    assert.throws(() => defineAction({ ...base, name: "ok", summary: "two\nlines" }), ActionDefinitionError);
    assert.throws(() => defineAction({ ...base, name: "ok", effects: "both" as never }), ActionDefinitionError);
    assert.throws(() => defineAction({ ...base, name: "ok", timeoutMs: 0 }), ActionDefinitionError);
    assert.throws(() => defineAction({ ...base, name: "ok", timeoutMs: 3_600_001 }), ActionDefinitionError);
    assert.throws(() => defineAction({ ...base, name: "ok", timeoutMs: 1.5 }), ActionDefinitionError);
  });

  it("keeps zod from compiling validators (jitless, for every zod 4 copy in the process)", () => {
    const config = (globalThis as { __zod_globalConfig?: { jitless?: boolean } }).__zod_globalConfig;
    assert.equal(config?.jitless, true);
  });
});
