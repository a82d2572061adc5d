import { parseArgs } from "node:util";
import { auditLedger } from "../evidence/audit-ledger.js";
import { openLedgerReadOnly, receiptPublicKey } from "./ledger-access.js";

export const auditHelp = `Usage: openexec audit [--db URL] [--key PUBLIC_KEY_PEM]

Walks the whole ledger: recomputes every receipt digest and log leaf, checks
every receipt signature and every row against its receipt (and a consumed
approval's id), rebuilds the Merkle tree and checks every checkpoint's root and
signature; the newest checkpoint must cover the whole log, every finished
execution and denial must be a leaf, and every counter must equal the total its
last executed counter.add recorded. Prints a JSON report naming the first row
that diverges (docs/RECEIPTS.md, "Audit and export").

  --db URL    the ledger (default: OPENEXEC_DB_URL, else sqlite:///openexec.db)
  --key FILE  the executor's receipt public key (default: the key beside the ledger)

Exit status: 0 the ledger is consistent, 1 it diverges, 2 it cannot be audited.
`;

export async function auditCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: { db: { type: "string" }, key: { type: "string" }, help: { type: "boolean", short: "h" } },
  });
  if (values.help) {
    process.stdout.write(auditHelp);
    return 0;
  }
  const { store, path } = await openLedgerReadOnly(values.db);
  try {
    const { key } = receiptPublicKey(values.key, path);
    const report = await auditLedger(store, key);
    process.stdout.write(`${JSON.stringify(report)}\n`);
    return report.ok ? 0 : 1;
  } finally {
    await store.close();
  }
}
