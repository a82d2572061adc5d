import { openPostgresStorage, type PostgresConnectionOptions } from "../src/ledger/postgres-storage.js";
import { ledgerContract } from "./ledger-contract.js";
import { freshSchema, postgresSkipReason } from "./support/postgres.js";

const skip = await postgresSkipReason();
const identity = { logOrigin: "openexec/contract", receiptKeyId: "contract" };

ledgerContract(
  "PostgreSQL",
  async () => {
    const schema = await freshSchema();
    const options: PostgresConnectionOptions = {
      url: schema.url,
      poolSize: 4,
      statementTimeoutMs: 5000,
      connectTimeoutMs: 5000,
    };
    let storage = await openPostgresStorage(options, identity);
    return {
      storage,
      async reopen() {
        await storage.close();
        storage = await openPostgresStorage(options, identity);
        return storage;
      },
      async cleanup() {
        await storage.close();
        await schema.drop();
      },
    };
  },
  { skip },
);
