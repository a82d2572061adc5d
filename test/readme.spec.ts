import assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, it } from "node:test";
import { promisify } from "node:util";
import { packageRoot } from "../src/version.js";
import { nodeArgsFor } from "./support/entry.js";
import { scratchDir, spawnServer } from "./support/test-server.js";

const exec = promisify(execFile);
/** `node` running src/cli/main.ts, compiled or through tsx (./support/entry.ts), for the README's ./bin/openexec.js. */
const cli = ["node", ...nodeArgsFor(join(packageRoot, "src/cli/main.ts"))].join(" ");

/** The shell block after `<!-- readme-test: NAME -->` in README.md, as lines (continuations joined). */
function readmeBlock(name: string): string[] {
  const readme = readFileSync(join(packageRoot, "README.md"), "utf8");
  const start = readme.indexOf(`<!-- readme-test: ${name} -->`);
  assert.ok(start >= 0, `README has no block "${name}"`);
  const block = /```sh\n([\s\S]*?)```/.exec(readme.slice(start));
  assert.ok(block?.[1] !== undefined);
  return block[1]
    .replaceAll("\\\n", " ")
    .split("\n")
    .map((line) => line.trim())
    .filter((line) => line !== "" && !line.startsWith("#"));
}

describe("README", () => {
  it("the clawshield flow works as written", async () => {
    const dir = scratchDir();
    try {
      const sh = (line: string) =>
        exec("sh", ["-c", line.replaceAll("./bin/openexec.js", cli)], {
          cwd: dir.path,
          env: { PATH: process.env.PATH },
        });
      const lines = readmeBlock("clawshield");
      const serverLine = lines.find((line) => line.endsWith("npm start"));
      assert.ok(serverLine !== undefined);
      let server: Awaited<ReturnType<typeof spawnServer>> | undefined;
      let answer = "";
      for (const line of lines) {
        if (line === serverLine) {
          // The same assignments, evaluated by the shell, for a server on a free port.
          const { stdout } = await sh(`${line.replace(/npm start$/, "")} env`);
          const env = Object.fromEntries(
            ["OPENEXEC_MODE", "CLAWSHIELD_TENANT_ID", "CLAWSHIELD_PUBLIC_KEY"].map((name) => [
              name,
              /* value of name in `env` output; the PEM spans lines */
              extractEnv(stdout, name),
            ]),
          );
          server = await spawnServer(
            { ...env, OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db` },
            ["--port", "0"],
            dir.path,
          );
          continue;
        }
        const port = server === undefined ? "5000" : new URL(server.url).port;
        answer = (await sh(line.replaceAll("localhost:5000", `localhost:${port}`))).stdout;
      }
      assert.ok(server !== undefined);
      const body = JSON.parse(answer);
      assert.equal(body.approved, true);
      assert.deepEqual(body.result, { echo: { msg: "hello" } });
      server.child.kill("SIGTERM");
      assert.equal(await server.exited, 0);
    } finally {
      dir.cleanup();
    }
  });
});

describe("README offline verification", () => {
  it("verifies a receipt in three commands, the last without the server", async () => {
    const dir = scratchDir();
    try {
      const server = await spawnServer(
        { OPENEXEC_DB_URL: `sqlite:///${dir.path}/ledger.db` },
        ["--port", "0"],
        dir.path,
      );
      const port = new URL(server.url).port;
      const executed = await fetch(`${server.url}/execute`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ action: "echo", payload: { msg: "hello" }, nonce: "readme-1" }),
      });
      const { id } = (await executed.json()) as { id: string };
      const sh = (line: string) =>
        exec(
          "sh",
          [
            "-c",
            line
              .replaceAll("./bin/openexec.js", cli)
              .replaceAll("<id>", id)
              .replaceAll("localhost:5000", `localhost:${port}`),
          ],
          {
            cwd: dir.path,
            env: { PATH: process.env.PATH },
          },
        );
      const [key, bundle, verify] = readmeBlock("verify-offline");
      assert.ok(key !== undefined && bundle !== undefined && verify !== undefined);
      await sh(key);
      await sh(bundle);
      server.child.kill("SIGTERM");
      assert.equal(await server.exited, 0);
      const verdict = JSON.parse((await sh(verify)).stdout);
      assert.equal(verdict.valid, true);
      assert.equal(verdict.execution_id, id);
      assert.deepEqual(verdict.checked, { signature: true, result: false, checkpoint: true, inclusion: true });
      // Then the result too: the README writes result.json and adds --result.
      const [write, verifyResult, ...rest] = readmeBlock("verify-result");
      assert.ok(write !== undefined && verifyResult !== undefined && rest.length === 0);
      await sh(write);
      const withResult = JSON.parse((await sh(verifyResult)).stdout);
      assert.equal(withResult.valid, true);
      assert.deepEqual(withResult.checked, { signature: true, result: true, checkpoint: true, inclusion: true });
    } finally {
      dir.cleanup();
    }
  });
});

function extractEnv(envOutput: string, name: string): string {
  const lines = envOutput.split("\n");
  const start = lines.findIndex((line) => line.startsWith(`${name}=`));
  assert.ok(start >= 0, `${name} not set by the README line`);
  const value = [lines[start]?.slice(name.length + 1) ?? ""];
  for (let i = start + 1; i < lines.length && !/^[A-Z_][A-Z0-9_]*=/.test(lines[i] ?? ""); i++)
    value.push(lines[i] ?? "");
  return value.join("\n").trimEnd();
}
