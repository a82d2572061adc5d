import { createWriteStream } from "node:fs";
import { parseArgs } from "node:util";
import { toJson } from "@bufbuild/protobuf";
import { SignedEnvelopeSchema } from "../../gen/openexec/v1/envelope_pb.js";
import { signedReceiptOf } from "../api/execute-response.js";
import { openLedgerReadOnly, receiptPublicKey } from "./ledger-access.js";

export const exportHelp = `Usage: openexec export [--db URL] [--key PUBLIC_KEY_PEM] [--out FILE]

Writes the receipts log as JSON Lines, for an external witness ledger:
  {"type":"log", "receipt_key":{...}, "public_key_pem":...}      first
  {"type":"receipt", "log_index", "kind", "execution_id", "leaf_hash", "signed_receipt"}   one per leaf, in order
  {"type":"checkpoint", "tree_size", "root_hash", "checkpoint"}   one per signed checkpoint
Hashes are lowercase hex; signed_receipt is the DSSE-shaped envelope (base64 bytes).

  --db URL    the ledger (default: OPENEXEC_DB_URL, else sqlite:///openexec.db)
  --key FILE  the executor's receipt public key (default: the key beside the ledger)
  --out FILE  where to write (default: standard output)
`;

export async function exportCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      db: { type: "string" },
      key: { type: "string" },
      out: { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(exportHelp);
    return 0;
  }
  const { store, path } = await openLedgerReadOnly(values.db);
  const out = values.out === undefined ? process.stdout : createWriteStream(values.out, { flags: "wx" });
  const write = (line: unknown) =>
    new Promise<void>((resolve, reject) => out.write(`${JSON.stringify(line)}\n`, (e) => (e ? reject(e) : resolve())));
  try {
    const { key, pem } = receiptPublicKey(values.key, path);
    await write({
      type: "log",
      receipt_key: { key_id: key.keyId, algorithm: "ed25519", fingerprint: key.fingerprint },
      public_key_pem: pem,
    });
    for await (const entry of store.logEntries()) {
      await write({
        type: "receipt",
        log_index: entry.leafIndex,
        kind: entry.kind,
        execution_id: entry.entryId,
        leaf_hash: entry.leafHash.toString("hex"),
        signed_receipt:
          entry.receipt === undefined
            ? null
            : toJson(SignedEnvelopeSchema, signedReceiptOf(entry.receipt), { useProtoFieldName: true }),
      });
    }
    for await (const checkpoint of store.checkpoints()) {
      await write({
        type: "checkpoint",
        tree_size: checkpoint.treeSize,
        root_hash: checkpoint.rootHash.toString("hex"),
        checkpoint: checkpoint.note,
      });
    }
    return 0;
  } finally {
    if (out !== process.stdout) await new Promise<void>((resolve) => out.end(() => resolve()));
    await store.close();
  }
}
