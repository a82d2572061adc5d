#!/usr/bin/env node
import { approveCommand } from "./approve-command.js";
import { keygenCommand } from "./keygen-command.js";
import { serveCommand, serveHelp } from "./serve-command.js";

const usage = `Usage: openexec <command> [options]

Commands:
  serve    run the execution server (what npm start runs)
  keygen   create an Ed25519 key pair for signing approvals
  approve  mint a signed approval and print the /execute body

Run "openexec <command> --help" for a command's options.
`;

const commands: Record<string, (args: string[]) => Promise<number>> = {
  serve: serveCommand,
  keygen: keygenCommand,
  approve: approveCommand,
};

async function main(argv: string[]): Promise<number> {
  const [name, ...args] = argv;
  if (name === undefined || name === "--help" || name === "-h" || name === "help") {
    process.stdout.write(name === undefined ? usage : `${usage}\n${serveHelp}`);
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (command === undefined) {
    process.stderr.write(`openexec: unknown command "${name}"\n\n${usage}`);
    return 2;
  }
  return command(args);
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (error: unknown) => {
    // Start-up failures (port in use, unreadable ledger, ...) end here: one clear line, exit 1.
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`openexec: ${message}\n`);
    process.exitCode = 1;
  },
);
