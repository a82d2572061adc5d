import { type ChildProcess, execFileSync, spawn } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Everything the benchmark started, so it can be torn down however the run ends. */
const children = new Set<ChildProcess>();
const scratchDirs = new Set<string>();

export function makeScratchDir(prefix: string): string {
  const path = mkdtempSync(join(tmpdir(), prefix));
  scratchDirs.add(path);
  return path;
}

export function removeScratchDir(path: string): void {
  rmSync(path, { recursive: true, force: true });
  scratchDirs.delete(path);
}

/** Synchronous last-resort cleanup: kills what still runs and removes scratch directories. */
export function cleanupNow(): void {
  for (const child of children) {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  children.clear();
  for (const path of scratchDirs) rmSync(path, { recursive: true, force: true });
  scratchDirs.clear();
}

/** Cleans up on exit and on SIGINT/SIGTERM, so an interrupted run leaves no servers or files behind. */
export function installCleanupHandlers(): void {
  process.once("exit", cleanupNow);
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    process.once(signal, () => {
      cleanupNow();
      process.exit(130);
    });
  }
}

export interface ServerChild {
  readonly child: ChildProcess;
  /** http://127.0.0.1:PORT */
  readonly url: string;
  stderr(): string;
  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Spawns a Node server (`node <args>`) and waits for the line
 * "listening on http://127.0.0.1:PORT" on its stderr.
 */
export async function spawnServer(
  args: readonly string[],
  options: { cwd: string; env: Record<string, string>; startTimeoutMs?: number },
): Promise<ServerChild> {
  const child = spawn(process.execPath, args, {
    cwd: options.cwd,
    env: options.env,
    stdio: ["ignore", "ignore", "pipe"],
  });
  children.add(child);
  let stderr = "";
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    // Keep the start and the end of what it says; a noisy server must not grow this without bound.
    stderr =
      stderr.length > 64_000 ? `${stderr.slice(0, 16_000)}\n...\n${stderr.slice(-16_000)}${chunk}` : stderr + chunk;
  });
  const exited = new Promise<number | null>((resolve) => {
    child.once("exit", (code) => {
      children.delete(child);
      resolve(code);
    });
    // Spawning itself failed (e.g. a missing working directory): there will be no "exit".
    child.once("error", (error) => {
      stderr += `\n${error.message}`;
      children.delete(child);
      resolve(null);
    });
  });
  const stop = async (graceMs = 15_000): Promise<number | null> => {
    if (child.exitCode !== null || child.signalCode !== null) return exited;
    child.kill("SIGTERM");
    const timer = setTimeout(() => child.kill("SIGKILL"), graceMs);
    const code = await exited;
    clearTimeout(timer);
    return code;
  };

  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`server did not start within ${options.startTimeoutMs ?? 30_000} ms:\n${stderr}`));
    }, options.startTimeoutMs ?? 30_000);
    const onData = () => {
      const match = /listening on (http:\/\/127\.0\.0\.1:\d+)/.exec(stderr);
      if (match?.[1] !== undefined) {
        clearTimeout(timer);
        child.stderr?.off("data", onData);
        resolve(match[1]);
      }
    };
    child.stderr?.on("data", onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${stderr}`));
    });
  }).catch(async (error: unknown) => {
    await stop(1000);
    throw error;
  });
  return { child, url, stderr: () => stderr, stop };
}

/**
 * CPU time (user + system, ms) a process has used so far, from /proc on Linux;
 * undefined elsewhere. Resolution is one clock tick (10 ms at the usual 100 Hz).
 */
export function processCpuMs(pid: number | undefined): number | undefined {
  if (pid === undefined) return undefined;
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state is the first; utime and stime are the 12th and 13th.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? (ticks * 1000) / clockTicksPerSecond : undefined;
  } catch {
    return undefined;
  }
}

const clockTicksPerSecond = (() => {
  try {
    const value = Number(execFileSync("getconf", ["CLK_TCK"], { encoding: "utf8" }).trim());
    return Number.isFinite(value) && value > 0 ? value : 100;
  } catch {
    return 100;
  }
})();

/** Machine-wide CPU time (ms) from /proc/stat: busy (incl. steal) and steal; undefined off Linux. */
export function machineCpuMs(): { busy: number; steal: number } | undefined {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n", 1)[0] ?? "";
    const [user, nice, system, , , irq, softirq, steal] = line.trim().split(/\s+/).slice(1).map(Number);
    const busy = [user, nice, system, irq, softirq, steal].reduce<number>((sum, v) => sum + (v ?? 0), 0);
    if (!Number.isFinite(busy)) return undefined;
    return { busy: (busy * 1000) / clockTicksPerSecond, steal: ((steal ?? 0) * 1000) / clockTicksPerSecond };
  } catch {
    return undefined;
  }
}
