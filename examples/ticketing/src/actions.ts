import { defineAction, z } from "openexec/actions";
import type { TicketSystem } from "./ticket-system.js";

/**
 * The operator's own actions. Both act on the ticket system, so both declare
 * `effects: "external"`: OpenExec reserves the nonce before they run, and
 * each passes `context.executionId` to the ticket system as its idempotency
 * key, so the far side applies each execution at most once as well.
 */
export function ticketActions(tickets: TicketSystem) {
  const ticketCreate = defineAction({
    name: "ticket.create",
    summary: 'opens a ticket: {"title": "...", "priority": "low"|"normal"|"high"} gives {"ticket_id": "..."}',
    effects: "external",
    input: z.strictObject({
      title: z.string().min(1).max(200),
      priority: z.enum(["low", "normal", "high"]),
    }),
    output: z.strictObject({ ticket_id: z.string() }),
    timeoutMs: 10_000,
    async run({ title, priority }, context) {
      // A ticket id derived from the execution: the same on every replica and every retry.
      const ticketId = `T-${context.executionId.slice(-12)}`;
      const line = await tickets.apply(
        { idempotency_key: context.executionId, op: "create", ticket_id: ticketId, title, priority },
        context.signal,
      );
      return { ticket_id: line.ticket_id };
    },
  });

  const ticketClose = defineAction({
    name: "ticket.close",
    summary: 'closes a ticket: {"ticket_id": "T-..."} gives {"ticket_id": "...", "status": "closed"}',
    effects: "external",
    input: z.strictObject({ ticket_id: z.string().regex(/^T-[0-9a-f]{12}$/) }),
    output: z.strictObject({ ticket_id: z.string(), status: z.literal("closed") }),
    async run({ ticket_id }, context) {
      const known = (await tickets.lines()).some((line) => line.op === "create" && line.ticket_id === ticket_id);
      // A throw from run is recorded as a failed execution (handler_error), with its receipt; the
      // message is never returned or logged, only the error's name.
      if (!known) throw new Error("no such ticket");
      await tickets.apply({ idempotency_key: context.executionId, op: "close", ticket_id }, context.signal);
      return { ticket_id, status: "closed" as const };
    },
  });

  return [ticketCreate, ticketClose];
}
