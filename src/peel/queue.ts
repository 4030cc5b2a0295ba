/**
 * Where a peel's jobs wait and run. Mutating work (state runs, commands) goes through one
 * bounded FIFO so two runs never fight over the same files or packages; read-only work starts at
 * once. Every job gets an AbortController so a cancel reaches it wherever it is.
 */

export type JobTask = (signal: AbortSignal) => Promise<void>;

interface Entry {
  jid: string;
  task: JobTask;
  controller: AbortController;
  /** Called instead of the task when the job is dropped before it started. */
  onDropped: (reason: string) => void;
}

export type Submitted = { position: number } | { busy: number };

export class JobQueue {
  private readonly waiting: Entry[] = [];
  private current: Entry | undefined;
  /** Read-only jobs currently running, for cancel. */
  private readonly concurrent = new Map<string, AbortController>();
  private readonly settled = new Set<Promise<void>>();
  private closed = false;

  /** @param limit how many mutating jobs may wait behind the running one. */
  constructor(private readonly limit: number) {}

  /** Jobs running or waiting. */
  get busy(): number {
    return this.waiting.length + (this.current ? 1 : 0) + this.concurrent.size;
  }

  /**
   * Queues a mutating job. Position 0 means it starts now; a full queue answers `{busy: n}`
   * (n = jobs running or waiting) without queueing anything.
   */
  submit(jid: string, task: JobTask, onDropped: (reason: string) => void): Submitted {
    const running = this.current ? 1 : 0;
    if (this.closed) return { busy: this.waiting.length + running };
    if (running === 1 && this.waiting.length >= this.limit) return { busy: this.waiting.length + running };
    this.waiting.push({ jid, task, controller: new AbortController(), onDropped });
    const position = this.waiting.length - 1 + running;
    this.pump();
    return { position };
  }

  /** Starts a read-only job now, next to whatever else runs. */
  runConcurrent(jid: string, task: JobTask): void {
    const controller = new AbortController();
    this.concurrent.set(jid, controller);
    this.track(
      task(controller.signal).finally(() => {
        if (this.concurrent.get(jid) === controller) this.concurrent.delete(jid);
      }),
    );
  }

  /** Aborts a running job or drops a waiting one. False when the jid is unknown here. */
  cancel(jid: string, reason = "canceled"): boolean {
    if (this.current?.jid === jid) {
      this.current.controller.abort(new Error(reason));
      return true;
    }
    const idx = this.waiting.findIndex((e) => e.jid === jid);
    if (idx >= 0) {
      const [entry] = this.waiting.splice(idx, 1);
      entry!.onDropped(reason);
      return true;
    }
    const c = this.concurrent.get(jid);
    if (c) {
      c.abort(new Error(reason));
      return true;
    }
    return false;
  }

  /** Refuses new work, drops waiting jobs, aborts running ones and waits for them to finish. */
  async close(reason = "peel stopping"): Promise<void> {
    this.closed = true;
    for (const e of this.waiting.splice(0)) e.onDropped(reason);
    this.current?.controller.abort(new Error(reason));
    for (const c of this.concurrent.values()) c.abort(new Error(reason));
    while (this.settled.size > 0) await Promise.allSettled([...this.settled]);
  }

  private pump(): void {
    if (this.current || this.closed) return;
    const next = this.waiting.shift();
    if (!next) return;
    this.current = next;
    this.track(
      next.task(next.controller.signal).finally(() => {
        this.current = undefined;
        this.pump();
      }),
    );
  }

  private track(p: Promise<void>): void {
    const guarded = p.catch(() => {});
    this.settled.add(guarded);
    void guarded.finally(() => this.settled.delete(guarded));
  }
}
