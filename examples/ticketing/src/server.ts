// The operator's server: OpenExec with the ticketing actions, nothing else.
// Every OPENEXEC_* / CLAWSHIELD_* variable works as it does for `openexec serve`.
import { startOpenExec } from "openexec/server";
import { ticketActions } from "./actions.js";
import { TicketSystem } from "./ticket-system.js";

const tickets = new TicketSystem(process.env.TICKETS_FILE ?? "tickets.jsonl");
const server = await startOpenExec({
  actions: ticketActions(tickets),
  port: Number(process.env.OPENEXEC_PORT ?? 5000),
});
process.stderr.write(`ticketing listening on ${server.url}\n`);

// The first signal drains (finishes running executions); a second stops at once.
let signals = 0;
for (const signal of ["SIGTERM", "SIGINT"] as const) {
  process.on(signal, () => {
    signals++;
    void server.close({ now: signals > 1 }).then(() => process.exit(0));
  });
}
