// The routing registry: server-id -> binary (1:1, first claim wins), server-id -> phones (1:N),
// server-id -> grace entry. It decides and returns what must be closed; it never sends or closes
// anything itself. JavaScript runs each method to completion, so every method is the atomic
// critical section the reference relay guarded with a mutex.

/** What the registry needs to know about a phone. */
export interface RegisteredPhone {
  readonly connId: string;
}

/** One armed grace timer. A fresh object per arm: the expiry callback proceeds only if the map
 * still holds this exact object (pointer identity), so a timer that fired after a reclaim,
 * takeover or re-arm is a no-op even if clearTimeout raced with its already-queued callback. */
export interface GraceEntry {
  handle: ReturnType<typeof setTimeout> | undefined;
  /** When the binary's connection ended (Date.now clock); reclaim latency is measured from here. */
  startedAtMs: number;
}

export type ClaimDecision<B, P> =
  /** The slot is now this binary's. `evicted` are the previous phones (close them 4404);
   * `graceStartedAtMs` is set when the slot was in its grace window. */
  | { kind: 'claimed'; reclaimed: boolean; evicted: P[]; graceStartedAtMs?: number }
  /** A connected binary holds the slot: probe it before deciding. */
  | { kind: 'held'; incumbent: B };

export type TakeoverDecision<B, P> =
  | { kind: 'claimed'; evicted: P[]; displaced: B | undefined; graceStartedAtMs?: number }
  /** Someone else got the slot while the probe ran. */
  | { kind: 'conflict' };

export type RegisterDecision = 'ok' | 'no_server' | 'at_cap';

export interface RegistryOptions<P> {
  gracePeriodMs: number;
  maxPhonesPerServer: number;
  /** A grace window ran out: the slot and these phones were removed. Close the phones (1000). */
  onGraceExpired(serverId: string, phones: P[]): void;
}

export class Registry<B, P extends RegisteredPhone> {
  private readonly binaries = new Map<string, B>();
  private readonly phones = new Map<string, P[]>();
  private readonly graces = new Map<string, GraceEntry>();
  private phoneCount = 0;

  constructor(private readonly options: RegistryOptions<P>) {}

  /** First-claim-wins. A slot in grace is reclaimed at once (its phones are evicted: their Noise
   * sessions lived in the old daemon process); a slot held by a connected binary needs a probe. */
  claim(serverId: string, binary: B): ClaimDecision<B, P> {
    if (this.graces.has(serverId)) return { kind: 'claimed', reclaimed: true, ...this.install(serverId, binary) };
    const incumbent = this.binaries.get(serverId);
    if (incumbent !== undefined) return { kind: 'held', incumbent };
    this.binaries.set(serverId, binary);
    return { kind: 'claimed', reclaimed: false, evicted: [] };
  }

  /** The probe found `incumbent` dead: take the slot only if it is still the incumbent's. If the
   * slot emptied meanwhile (grace expired), this is a fresh claim. */
  takeover(serverId: string, binary: B, incumbent: B): TakeoverDecision<B, P> {
    const current = this.binaries.get(serverId);
    if (current === undefined) {
      this.binaries.set(serverId, binary);
      return { kind: 'claimed', evicted: [], displaced: undefined };
    }
    if (current !== incumbent) return { kind: 'conflict' };
    return { kind: 'claimed', displaced: incumbent, ...this.install(serverId, binary) };
  }

  /** A binary's connection ended. Arms the grace timer only if this connection still holds the
   * slot (scoped release: a displaced binary must not arm a timer that would evict its
   * successor). Re-arming replaces the pending timer. Returns whether a timer was armed. */
  release(serverId: string, binary: B): boolean {
    if (this.binaries.get(serverId) !== binary) return false;
    const previous = this.graces.get(serverId);
    if (previous !== undefined) clearTimeout(previous.handle);
    const entry: GraceEntry = { handle: undefined, startedAtMs: Date.now() };
    entry.handle = setTimeout(() => this.expire(serverId, entry), this.options.gracePeriodMs);
    this.graces.set(serverId, entry);
    return true;
  }

  /** Grace expiry. Public so tests can replay a stale fire with an old entry. Returns whether it
   * evicted anything (false for a stale fire, which must touch nothing). */
  expire(serverId: string, entry: GraceEntry): boolean {
    if (this.graces.get(serverId) !== entry) return false;
    this.graces.delete(serverId);
    this.binaries.delete(serverId);
    const phones = this.takePhones(serverId);
    this.options.onGraceExpired(serverId, phones);
    return true;
  }

  /** The pending grace entry for a server-id, if any (tests and diagnostics). */
  graceEntry(serverId: string): GraceEntry | undefined {
    return this.graces.get(serverId);
  }

  registerPhone(serverId: string, phone: P): RegisterDecision {
    if (!this.binaries.has(serverId)) return 'no_server';
    let list = this.phones.get(serverId);
    if (list === undefined) {
      list = [];
      this.phones.set(serverId, list);
    } else if (list.length >= this.options.maxPhonesPerServer) {
      return 'at_cap';
    }
    list.push(phone);
    this.phoneCount++;
    return 'ok';
  }

  /** Removes this phone object; a no-op if an eviction or expiry already removed it. */
  unregisterPhone(serverId: string, phone: P): boolean {
    const list = this.phones.get(serverId);
    if (list === undefined) return false;
    const index = list.indexOf(phone);
    if (index < 0) return false;
    // Swap-with-last: order within a server-id carries no meaning.
    list[index] = list[list.length - 1]!;
    list.pop();
    if (list.length === 0) this.phones.delete(serverId);
    this.phoneCount--;
    return true;
  }

  /** The binary holding the slot, connected or in grace. Looked up per frame. */
  binaryFor(serverId: string): B | undefined {
    return this.binaries.get(serverId);
  }

  /** A binary can only address phones under its own server-id. */
  phoneFor(serverId: string, connId: string): P | undefined {
    const list = this.phones.get(serverId);
    if (list === undefined) return undefined;
    for (const phone of list) if (phone.connId === connId) return phone;
    return undefined;
  }

  /** Binaries in grace are not counted; their phones are (docs/operations.md, "Health and readiness checks"). Every
   * grace entry belongs to a slot that is present, so the subtraction is exact. */
  counts(): { binaries: number; phones: number } {
    return { binaries: this.binaries.size - this.graces.size, phones: this.phoneCount };
  }

  /** Phones waiting on a binary in its grace window. O(slots in grace), read at collection. */
  parkedPhones(): number {
    let parked = 0;
    for (const serverId of this.graces.keys()) parked += this.phones.get(serverId)?.length ?? 0;
    return parked;
  }

  /** When the grace window of a slot started (ms, Date.now clock), if it is in grace. */
  graceStartedAt(serverId: string): number | undefined {
    return this.graces.get(serverId)?.startedAtMs;
  }

  /** Every registered connection, gracing binaries included (shutdown closes them all). */
  snapshot(): { binaries: B[]; phones: P[] } {
    const phones: P[] = [];
    for (const list of this.phones.values()) phones.push(...list);
    return { binaries: [...this.binaries.values()], phones };
  }

  /** Drops one slot without a grace window and returns what it held: a cluster engine moved the
   * server-id to another instance (reclaim or takeover there) or this instance fenced itself.
   * The caller closes what is returned. */
  forget(serverId: string): { binary: B | undefined; phones: P[] } {
    const grace = this.graces.get(serverId);
    if (grace !== undefined) {
      clearTimeout(grace.handle);
      this.graces.delete(serverId);
    }
    const binary = this.binaries.get(serverId);
    this.binaries.delete(serverId);
    return { binary: grace === undefined ? binary : undefined, phones: this.takePhones(serverId) };
  }

  /** Every server-id with a slot here (connected or in grace). */
  serverIds(): IterableIterator<string> {
    return this.binaries.keys();
  }

  /** Shutdown: cancels every grace timer and forgets every slot (nothing is persisted), so the
   * counts the final export reports are those of an empty relay. */
  dispose(): void {
    for (const entry of this.graces.values()) clearTimeout(entry.handle);
    this.graces.clear();
    this.binaries.clear();
    this.phones.clear();
    this.phoneCount = 0;
  }

  private install(serverId: string, binary: B): { evicted: P[]; graceStartedAtMs?: number } {
    const grace = this.graces.get(serverId);
    if (grace !== undefined) {
      clearTimeout(grace.handle);
      this.graces.delete(serverId);
    }
    this.binaries.set(serverId, binary);
    const evicted = this.takePhones(serverId);
    return grace === undefined ? { evicted } : { evicted, graceStartedAtMs: grace.startedAtMs };
  }

  private takePhones(serverId: string): P[] {
    const list = this.phones.get(serverId);
    if (list === undefined) return [];
    this.phones.delete(serverId);
    this.phoneCount -= list.length;
    return list;
  }
}
