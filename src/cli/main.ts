#!/usr/bin/env node
import { approveCommand } from "./approve-command.js";
import { auditCommand } from "./audit-command.js";
import { exportCommand } from "./export-command.js";
import { freezeCommand, unfreezeCommand } from "./freeze-command.js";
import { keygenCommand } from "./keygen-command.js";
import { UsageError } from "./ledger-access.js";
import { serveCommand, serveHelp } from "./serve-command.js";
import { verifyReceiptCommand } from "./verify-receipt-command.js";

const usage = `Usage: openexec <command> [options]

Commands:
  serve    run the execution server (what npm start runs)
  keygen   create an Ed25519 key pair for signing approvals
  approve  mint a signed approval and print the /execute body
  verify-receipt  verify a receipt offline (signature, result, checkpoint, inclusion)
  audit    check the whole ledger, its log and checkpoints; name the first divergence
  export   write the receipts log as JSON Lines for an external witness
  freeze   refuse new executions (all, or one action) until unfreeze: the operator's kill switch
  unfreeze lift a freeze

Run "openexec <command> --help" for a command's options.
`;

const commands: Record<string, (args: string[]) => Promise<number>> = {
  serve: serveCommand,
  keygen: keygenCommand,
  approve: approveCommand,
  "verify-receipt": verifyReceiptCommand,
  audit: auditCommand,
  export: exportCommand,
  freeze: freezeCommand,
  unfreeze: unfreezeCommand,
};

/** Commands whose exit status 1 is a verdict ("invalid", "diverges"): failing to run them is 2. */
const verdictCommands = new Set(["verify-receipt", "audit", "export", "approve", "keygen", "freeze", "unfreeze"]);

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(name === undefined ? usage : `${usage}\n${serveHelp()}`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`openexec: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  if (!verdictCommands.has(name)) return command(args);
  try {
    return await command(args);
  } catch (error) {
    throw error instanceof UsageError ? error : new UsageError((error as Error).message ?? String(error));
  }
}

// A reader that stops early (`openexec export | head`) is not an error.
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (error.code === "EPIPE") process.exit(0);
  throw error;
});

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    if (error instanceof UsageError || (error as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`openexec: ${(error as Error).message}\n`);
      process.exitCode = 2;
      return;
    }
    // Start-up failures (port in use, unreadable ledger, ...) end here: one clear line, exit 1.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`openexec: ${message}\n`);
    process.exitCode = 1;
  },
);
