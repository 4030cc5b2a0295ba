import { describe, expect, it } from "vitest";
import { Coalescer } from "../src/util/coalesce.js";

/** A task whose runs finish only when the test says so. */
function gatedTask() {
  const starts: number[] = [];
  const gates: ((v: number) => void)[] = [];
  const fails: ((e: Error) => void)[] = [];
  const task = () =>
    new Promise<number>((resolve, reject) => {
      starts.push(Date.now());
      gates.push(resolve);
      fails.push(reject);
    });
  return { task, starts, gates, fails };
}

const tick = () => new Promise((r) => setTimeout(r, 5));

describe("Coalescer", () => {
  it("runs at once when idle, and callers during a run share one run queued behind it", async () => {
    const t = gatedTask();
    const c = new Coalescer(t.task);
    const first = c.run();
    await tick();
    expect(t.starts.length).toBe(1);
    const during = [c.run(), c.run(), c.run()];
    await tick();
    expect(t.starts.length).toBe(1);
    t.gates[0]!(1);
    expect(await first).toBe(1);
    await tick();
    expect(t.starts.length).toBe(2);
    // A caller arriving while the queued run is going gets a third run, not that one.
    const late = c.run();
    t.gates[1]!(2);
    expect(await Promise.all(during)).toEqual([2, 2, 2]);
    await tick();
    expect(t.starts.length).toBe(3);
    t.gates[2]!(3);
    expect(await late).toBe(3);
  });

  it("a failed run rejects its callers only; the queued run still happens", async () => {
    const t = gatedTask();
    const c = new Coalescer(t.task);
    const first = c.run();
    const queued = c.run();
    t.fails[0]!(new Error("boom"));
    await expect(first).rejects.toThrow("boom");
    await tick();
    t.gates[1]!(7);
    expect(await queued).toBe(7);
    await tick();
    const again = c.run();
    await tick();
    expect(t.starts.length).toBe(3);
    t.gates[2]!(8);
    expect(await again).toBe(8);
  });
});
