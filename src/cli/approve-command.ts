import { createPublicKey } from "node:crypto";
import { readFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { signApproval } from "../client/sign-approval.js";
import { parseStrictJson } from "../json/strict-json.js";
import { parsePublicKeyPem, privateKeySeedFromPem } from "../signing/ed25519-keys.js";
import { UsageError } from "./ledger-access.js";

export const approveHelp = `Usage: openexec approve --key FILE --tenant ID --action NAME --payload JSON --nonce NONCE
                        [--lifetime SECONDS] [--key-id ID] [--audience EXECUTOR] [--approval-id ID]

Mints a signed approval artifact (the governance side) and prints the JSON body
for POST /execute: {"action","payload","nonce","approval_artifact"}.

  --key FILE         PEM Ed25519 private key (from openexec keygen)
  --tenant ID        the executor's CLAWSHIELD_TENANT_ID
  --action NAME      the action approved
  --payload JSON     the exact payload approved (a JSON object)
  --nonce NONCE      the nonce the request will carry
  --lifetime SECONDS how long the approval is valid (default 300)
  --key-id ID        the key's id in the executor's key ring (default: derived from the key)
  --audience ID      only the executor with this OPENEXEC_EXECUTOR_ID may run it
  --approval-id ID   unique per tenant (default: a random UUID)
`;

export async function approveCommand(args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      key: { type: "string" },
      tenant: { type: "string" },
      action: { type: "string" },
      payload: { type: "string" },
      nonce: { type: "string" },
      lifetime: { type: "string", default: "300" },
      "key-id": { type: "string" },
      audience: { type: "string" },
      "approval-id": { type: "string" },
      help: { type: "boolean", short: "h" },
    },
  });
  if (values.help) {
    process.stdout.write(approveHelp);
    return 0;
  }
  const { key, tenant, action, payload, nonce } = values;
  if (
    key === undefined ||
    tenant === undefined ||
    action === undefined ||
    payload === undefined ||
    nonce === undefined
  ) {
    process.stderr.write(
      `openexec approve: --key, --tenant, --action, --payload and --nonce are required\n\n${approveHelp}`,
    );
    return 2;
  }
  const lifetimeSeconds = Number(values.lifetime);
  if (!Number.isSafeInteger(lifetimeSeconds) || lifetimeSeconds <= 0) {
    process.stderr.write("openexec approve: --lifetime must be a positive whole number of seconds\n");
    return 2;
  }
  let parsed: ReturnType<typeof parseStrictJson>;
  try {
    parsed = parseStrictJson(payload, { maxDepth: 32 });
  } catch (error) {
    throw new UsageError(`--payload is not JSON: ${(error as Error).message}`);
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    process.stderr.write("openexec approve: --payload must be a JSON object\n");
    return 2;
  }
  const privatePem = readFileSync(key, "utf8");
  const publicPem = createPublicKey(privatePem).export({ format: "pem", type: "spki" }).toString();
  const signed = await signApproval({
    privateKey: privateKeySeedFromPem(privatePem),
    keyId: values["key-id"] ?? parsePublicKeyPem(publicPem).keyId,
    tenantId: tenant,
    action,
    payload: parsed,
    nonce,
    lifetimeSeconds,
    ...(values.audience === undefined ? {} : { audience: values.audience }),
    ...(values["approval-id"] === undefined ? {} : { approvalId: values["approval-id"] }),
  });
  process.stdout.write(
    `${JSON.stringify({ action, payload: parsed, nonce, approval_artifact: signed.artifactBase64 })}\n`,
  );
  return 0;
}
