// An in-memory engine behind the same Bus and OwnerStore interfaces as NATS: several relays in
// one process share a MemoryHub. It proves the seam (role.ts runs unchanged on a second engine)
// and lets tests run cluster semantics without a server. Not a production engine: one process is
// one failure domain. Batches are delivered asynchronously and in order, like a real bus.

import type { Bus, BusHandlers, OwnerEntry, OwnerStore, RequestOutcome } from './bus.js';

interface Stored {
  home: string;
  boot: string;
  revision: number;
}

/** What the instances of one in-memory cluster share. */
export class MemoryHub {
  readonly handlers = new Map<string, BusHandlers>();
  readonly entries = new Map<string, Stored>();
  readonly leases = new Map<string, { boot: string; until: number }>();
  /** false = the engine is "down" for every instance. */
  up = true;
  revision = 0;
  readonly engines = new Set<MemoryEngine>();

  setUp(up: boolean): void {
    this.up = up;
    for (const engine of this.engines) engine.notify(up);
  }
}

export class MemoryEngine implements Bus, OwnerStore {
  private readonly listeners: ((connected: boolean) => void)[] = [];

  constructor(
    private readonly hub: MemoryHub,
    private readonly instanceId: string,
    private readonly boot: string,
    private readonly leaseMs: number,
  ) {
    hub.engines.add(this);
  }

  get connected(): boolean {
    return this.hub.up;
  }

  notify(connected: boolean): void {
    for (const listener of this.listeners) listener(connected);
  }

  onStatus(listener: (connected: boolean) => void): void {
    this.listeners.push(listener);
  }

  listen(handlers: BusHandlers): void {
    this.hub.handlers.set(this.instanceId, handlers);
  }

  close(): void {
    this.hub.handlers.delete(this.instanceId);
    this.hub.engines.delete(this);
  }

  publish(instance: string, batch: Uint8Array): boolean {
    if (!this.hub.up) return false;
    const copy = Buffer.from(batch);
    setImmediate(() => this.hub.handlers.get(instance)?.batch(copy));
    return true;
  }

  broadcast(batch: Uint8Array): boolean {
    if (!this.hub.up) return false;
    const copy = Buffer.from(batch);
    setImmediate(() => {
      for (const handlers of this.hub.handlers.values()) handlers.batch(copy);
    });
    return true;
  }

  async request(instance: string, body: Uint8Array, timeoutMs: number): Promise<RequestOutcome> {
    if (!this.hub.up) return { kind: 'down' };
    const handlers = this.hub.handlers.get(instance);
    if (handlers === undefined) return { kind: 'no_responders' };
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<RequestOutcome>((resolve) => {
      timer = setTimeout(() => resolve({ kind: 'timeout' }), timeoutMs);
    });
    const reply = handlers.request(body).then((b): RequestOutcome => ({ kind: 'reply', body: b }));
    const outcome = await Promise.race([reply, timeout]);
    clearTimeout(timer);
    return outcome;
  }

  private check(): void {
    if (!this.hub.up) throw new Error('engine down');
  }

  async get(key: string): Promise<OwnerEntry | null> {
    this.check();
    const e = this.hub.entries.get(key);
    return e === undefined ? null : { ...e };
  }

  async create(key: string, home: string, boot: string): Promise<number | null> {
    this.check();
    if (this.hub.entries.has(key)) return null;
    const revision = ++this.hub.revision;
    this.hub.entries.set(key, { home, boot, revision });
    return revision;
  }

  async update(key: string, home: string, boot: string, revision: number): Promise<number | null> {
    this.check();
    if (this.hub.entries.get(key)?.revision !== revision) return null;
    const next = ++this.hub.revision;
    this.hub.entries.set(key, { home, boot, revision: next });
    return next;
  }

  async delete(key: string, revision: number): Promise<boolean> {
    this.check();
    if (this.hub.entries.get(key)?.revision !== revision) return false;
    this.hub.entries.delete(key);
    return true;
  }

  async renewLease(): Promise<void> {
    this.check();
    this.hub.leases.set(this.instanceId, { boot: this.boot, until: Date.now() + this.leaseMs });
  }

  async leaseHeld(instance: string, boot: string): Promise<boolean> {
    this.check();
    const lease = this.hub.leases.get(instance);
    return lease !== undefined && lease.boot === boot && lease.until > Date.now();
  }

  async countLeases(): Promise<number> {
    this.check();
    let n = 0;
    for (const lease of this.hub.leases.values()) if (lease.until > Date.now()) n++;
    return n;
  }
}
