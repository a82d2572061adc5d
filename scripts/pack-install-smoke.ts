// The package as an operator gets it: `npm pack`, then a real `npm install ./openexec-*.tgz` into an
// empty project outside the repository (production dependencies only, better-sqlite3 compiled for
// this Node), then a tiny server of the operator's own from it, and one Execute over REST.
// test/package.spec.ts checks the same tarball in depth with linked dependencies; this checks that
// installing it really works.
//
//   node --import tsx scripts/pack-install-smoke.ts          (.ci/run, after npm test)
//   KEEP=1 node --import tsx scripts/pack-install-smoke.ts   keeps the scratch directory
import { execFileSync, spawn } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));

const serverSource = `
import { defineAction, z } from "openexec/actions";
import { startOpenExec } from "openexec/server";

const greet = defineAction({
  name: "greet",
  summary: "greets",
  effects: "ledger",
  input: z.strictObject({ name: z.string().min(1).max(40) }),
  run: ({ name }) => ({ greeting: "hello " + name }),
});
const server = await startOpenExec({ actions: [greet], port: 0, drainMs: 0, dbUrl: "sqlite:///ledger.db" });
process.on("SIGTERM", () => server.close().then(() => process.exit(0)));
process.stderr.write("listening on " + server.url + "\\n");
`;

function run(command: string, args: string[], cwd: string): string {
  process.stderr.write(`pack-install-smoke: ${command} ${args.join(" ")}\n`);
  return execFileSync(command, args, { cwd, encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), "openexec-pack-install-"));
  try {
    const packed = run("npm", ["pack", "--pack-destination", dir, "--loglevel", "error"], root);
    const tarball = join(dir, packed.trim().split("\n").at(-1) ?? "");
    const project = join(dir, "project");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "operator", private: true, type: "module" }));
    writeFileSync(join(project, "server.mjs"), serverSource);
    // better-sqlite3 compiles here (npm_config_nodedir, as .ci/run sets it, keeps node-gyp off the network).
    run("npm", ["install", "--no-audit", "--no-fund", "--omit=dev", tarball], project);

    const child = spawn(process.execPath, ["server.mjs"], {
      cwd: project,
      env: { PATH: process.env.PATH ?? "", OPENEXEC_LOG_LEVEL: "warn" },
      stdio: ["ignore", "inherit", "pipe"],
    });
    let stderr = "";
    child.stderr?.setEncoding("utf8");
    const url = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the server did not start:\n${stderr}`)), 30_000);
      child.stderr?.on("data", (chunk: string) => {
        stderr += chunk;
        const match = /listening on (http:\/\/\S+)/.exec(stderr);
        if (match?.[1] !== undefined) {
          clearTimeout(timer);
          resolve(match[1]);
        }
      });
      child.once("exit", (code) => reject(new Error(`the server exited with ${code}:\n${stderr}`)));
    });
    let failure: unknown;
    try {
      await executeOnce(url);
    } catch (error) {
      failure = error;
    }
    const exited = new Promise<number | null>((resolve) => child.once("exit", resolve));
    child.kill("SIGTERM");
    const code = await exited;
    if (failure !== undefined) throw failure;
    if (code !== 0) throw new Error(`the server exited with ${code} on SIGTERM:\n${stderr}`);
    process.stderr.write("pack-install-smoke: ok\n");
  } finally {
    if (process.env.KEEP === "1") process.stderr.write(`pack-install-smoke: kept ${dir}\n`);
    else rmSync(dir, { recursive: true, force: true });
  }
}

/** One Execute of the operator's action over REST, answered executed with its result. */
async function executeOnce(url: string): Promise<void> {
  const response = await fetch(`${url}/execute`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ action: "greet", payload: { name: "operator" }, nonce: "smoke-1" }),
  });
  const body = (await response.json()) as { status?: string; result?: unknown };
  if (response.status !== 200 || body.status !== "executed") {
    throw new Error(`Execute answered ${response.status}: ${JSON.stringify(body)}`);
  }
  if (JSON.stringify(body.result) !== JSON.stringify({ greeting: "hello operator" })) {
    throw new Error(`unexpected result ${JSON.stringify(body.result)}`);
  }
}

await main();
