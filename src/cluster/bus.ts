// The engine seam of cluster mode: a Bus (point-to-point batches, one broadcast subject,
// request/reply with a fast "no responders") and an OwnerStore (the directory: compare-and-swap
// entries whose revision is the fencing epoch, plus instance leases). NATS implements both
// (nats-engine.ts); a second engine (Redis) would implement the same two interfaces and leave
// role.ts and the sessions untouched.

export type RequestOutcome =
  | { kind: 'reply'; body: Uint8Array }
  | { kind: 'no_responders' }
  | { kind: 'timeout' }
  /** The engine is unreachable from here. */
  | { kind: 'down' };

export interface BusHandlers {
  /** A batch of records for this instance, or a broadcast batch. */
  batch(batch: Uint8Array): void;
  /** A request for this instance; the answer goes back to the requester. */
  request(body: Uint8Array): Promise<Uint8Array>;
}

export interface Bus {
  readonly connected: boolean;
  /** Sends a batch to one instance; false if the engine is unreachable (nothing was sent). */
  publish(instance: string, batch: Uint8Array): boolean;
  /** Sends a batch to every instance, this one included. */
  broadcast(batch: Uint8Array): boolean;
  request(instance: string, body: Uint8Array, timeoutMs: number): Promise<RequestOutcome>;
  listen(handlers: BusHandlers): void;
  /** Connection changes: false when the engine connection dropped, true when it is back. */
  onStatus(listener: (connected: boolean) => void): void;
}

/** A directory entry: who holds a server-id. `revision` is the fencing epoch. */
export interface OwnerEntry {
  home: string;
  boot: string;
  revision: number;
}

/** The directory. Every method throws when the engine cannot answer. */
export interface OwnerStore {
  get(key: string): Promise<OwnerEntry | null>;
  /** The new revision, or null if an entry exists. */
  create(key: string, home: string, boot: string): Promise<number | null>;
  /** The new revision, or null if the entry is no longer at `revision`. */
  update(key: string, home: string, boot: string, revision: number): Promise<number | null>;
  /** True if the entry was at `revision` and is now deleted. */
  delete(key: string, revision: number): Promise<boolean>;
  /** Writes this instance's lease (expires after the lease unless renewed). */
  renewLease(): Promise<void>;
  /** Whether `instance` holds a lease with boot nonce `boot` right now. */
  leaseHeld(instance: string, boot: string): Promise<boolean>;
  /** Instances holding a lease right now. */
  countLeases(): Promise<number>;
}
