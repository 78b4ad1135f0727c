// NATS behind the Bus and OwnerStore interfaces: core subjects for batches and requests,
// JetStream key-value buckets for the directory (compare-and-swap on revisions) and the instance
// leases (bucket TTL: nats-server 2.9 ignores per-key TTLs). Loaded only through a dynamic import
// (index.ts), so a relay without --cluster never loads the NATS client.

import { readFile } from 'node:fs/promises';
import { connect, credsAuthenticator, type NatsConnection, type Subscription } from '@nats-io/transport-node';
import { Kvm, type KV } from '@nats-io/kv';
import type { Bus, BusHandlers, OwnerEntry, OwnerStore, RequestOutcome } from './bus.js';
import type { ClusterMetrics, DirectoryOp } from '../metrics/cluster-metrics.js';

export const OWNER_BUCKET = 'pyry_relay_owner';
export const LEASE_BUCKET = 'pyry_relay_inst';
const SUBJECT_PREFIX = 'pyry.relay';
/** How long the first connection may take before the daemon gives up (exit 1). */
export const CONNECT_TIMEOUT_MS = 5_000;
/** Pause between reconnection attempts. */
const RECONNECT_WAIT_MS = 250;

export interface NatsOptions {
  servers: string[];
  instanceId: string;
  boot: string;
  leaseMs: number;
  user?: string;
  pass?: string;
  token?: string;
  credsFile?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string } | null;
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();

export class NatsEngine implements Bus, OwnerStore {
  private connectedFlag = true;
  private readonly statusListeners: ((connected: boolean) => void)[] = [];
  private readonly subs: Subscription[] = [];

  private constructor(
    /** Frames: batches and broadcasts, possibly megabytes queued. */
    private readonly nc: NatsConnection,
    /** Control: directory, leases, probes and registrations, never queued behind frames (a lease
     * renewal stuck behind a flood of frames would fence a healthy instance). */
    private readonly ctl: NatsConnection,
    private readonly owners: KV,
    private readonly leases: KV,
    private readonly options: NatsOptions,
    private readonly metrics: ClusterMetrics | null,
  ) {
    void this.watchStatus(nc);
    void this.watchStatus(ctl);
  }

  /** Connects (bounded by CONNECT_TIMEOUT_MS) and binds the buckets. Throws with a message that
   * never carries a credential. */
  static async open(options: NatsOptions, metrics: ClusterMetrics | null = null): Promise<NatsEngine> {
    const authenticator =
      options.credsFile === undefined ? undefined : credsAuthenticator(await readFile(options.credsFile));
    const open = (role: string): Promise<NatsConnection> =>
      connect({
        servers: options.servers,
        name: `pyrycode-relay/${options.instanceId}/${role}`,
        timeout: CONNECT_TIMEOUT_MS,
        maxReconnectAttempts: -1,
        reconnectTimeWait: RECONNECT_WAIT_MS,
        ...(options.user === undefined ? {} : { user: options.user, pass: options.pass }),
        ...(options.token === undefined ? {} : { token: options.token }),
        ...(authenticator === undefined ? {} : { authenticator }),
        ...(options.tls == null ? {} : { tls: options.tls }),
      });
    const nc = await open('data');
    let ctl: NatsConnection | undefined;
    try {
      ctl = await open('control');
      const kvm = new Kvm(ctl);
      const owners = await kvm.create(OWNER_BUCKET, { history: 1 });
      const leases = await kvm.create(LEASE_BUCKET, { history: 1, ttl: options.leaseMs });
      return new NatsEngine(nc, ctl, owners, leases, options, metrics);
    } catch (err) {
      await nc.close().catch(() => {});
      await ctl?.close().catch(() => {});
      throw err;
    }
  }

  get connected(): boolean {
    return this.connectedFlag;
  }

  /** Connected means both connections are up; either dropping is an engine outage. */
  private readonly down = new Set<NatsConnection>();

  private async watchStatus(conn: NatsConnection): Promise<void> {
    for await (const status of conn.status()) {
      if (status.type === 'disconnect') {
        this.down.add(conn);
        if (this.connectedFlag) this.setConnected(false);
      } else if (status.type === 'reconnect') {
        this.down.delete(conn);
        if (conn === this.ctl) this.metrics?.reconnected();
        if (this.down.size === 0 && !this.connectedFlag) this.setConnected(true);
      }
    }
  }

  private setConnected(connected: boolean): void {
    this.connectedFlag = connected;
    for (const listener of this.statusListeners) listener(connected);
  }

  onStatus(listener: (connected: boolean) => void): void {
    this.statusListeners.push(listener);
  }

  // ---- Bus ----

  private subject(kind: 'i' | 'r', instance: string): string {
    return `${SUBJECT_PREFIX}.${kind}.${instance}`;
  }

  publish(instance: string, batch: Uint8Array): boolean {
    // While disconnected the client would buffer and send later: stale frames. Refuse instead.
    if (!this.connectedFlag || this.nc.isClosed()) return false;
    this.nc.publish(this.subject('i', instance), batch);
    return true;
  }

  broadcast(batch: Uint8Array): boolean {
    if (!this.connectedFlag || this.nc.isClosed()) return false;
    this.nc.publish(`${SUBJECT_PREFIX}.all`, batch);
    return true;
  }

  async request(instance: string, body: Uint8Array, timeoutMs: number): Promise<RequestOutcome> {
    if (!this.connectedFlag || this.ctl.isClosed()) return { kind: 'down' };
    try {
      const msg = await this.ctl.request(this.subject('r', instance), body, { timeout: timeoutMs });
      return { kind: 'reply', body: msg.data };
    } catch (err) {
      const e = err as { isNoResponders?: () => boolean; message?: string; name?: string };
      if (typeof e.isNoResponders === 'function' && e.isNoResponders()) return { kind: 'no_responders' };
      if (String(e.message).includes('no responders')) return { kind: 'no_responders' };
      if (!this.connectedFlag) return { kind: 'down' };
      return { kind: 'timeout' };
    }
  }

  listen(handlers: BusHandlers): void {
    const own = this.nc.subscribe(this.subject('i', this.options.instanceId), {
      callback: (err, msg) => {
        if (err === null) handlers.batch(msg.data);
      },
    });
    const all = this.nc.subscribe(`${SUBJECT_PREFIX}.all`, {
      callback: (err, msg) => {
        if (err === null) handlers.batch(msg.data);
      },
    });
    const requests = this.ctl.subscribe(this.subject('r', this.options.instanceId), {
      callback: (err, msg) => {
        if (err !== null) return;
        void handlers.request(msg.data).then(
          (reply) => msg.respond(reply),
          () => {},
        );
      },
    });
    this.subs.push(own, all, requests);
  }

  async close(): Promise<void> {
    for (const sub of this.subs) sub.unsubscribe();
    await this.nc.close().catch(() => {});
    await this.ctl.close().catch(() => {});
  }

  // ---- OwnerStore ----

  private async timed<T>(op: DirectoryOp, run: () => Promise<T>, conflict: (value: T) => boolean): Promise<T> {
    const started = performance.now();
    try {
      const value = await run();
      this.metrics?.directoryOp(op, conflict(value) ? 'conflict' : 'ok', (performance.now() - started) / 1000);
      return value;
    } catch (err) {
      this.metrics?.directoryOp(op, 'error', (performance.now() - started) / 1000);
      throw err;
    }
  }

  get(key: string): Promise<OwnerEntry | null> {
    return this.timed(
      'get',
      async () => {
        const entry = await this.owners.get(key);
        if (entry === null || entry.operation !== 'PUT') return null;
        const value = JSON.parse(decoder.decode(entry.value)) as { home: string; boot: string };
        return { home: value.home, boot: value.boot, revision: entry.revision };
      },
      () => false,
    );
  }

  create(key: string, home: string, boot: string): Promise<number | null> {
    return this.timed(
      'create',
      () => casOrNull(this.owners.create(key, encoder.encode(JSON.stringify({ home, boot })))),
      (v) => v === null,
    );
  }

  update(key: string, home: string, boot: string, revision: number): Promise<number | null> {
    return this.timed(
      'update',
      () => casOrNull(this.owners.update(key, encoder.encode(JSON.stringify({ home, boot })), revision)),
      (v) => v === null,
    );
  }

  delete(key: string, revision: number): Promise<boolean> {
    return this.timed(
      'delete',
      async () => {
        const done = await casOrNull(this.owners.delete(key, { previousSeq: revision }).then(() => 1));
        return done !== null;
      },
      (v) => !v,
    );
  }

  async renewLease(): Promise<void> {
    await this.timed(
      'lease',
      () => this.leases.put(this.options.instanceId, encoder.encode(this.options.boot)),
      () => false,
    );
  }

  async leaseHeld(instance: string, boot: string): Promise<boolean> {
    const entry = await this.leases.get(instance);
    return entry !== null && entry.operation === 'PUT' && decoder.decode(entry.value) === boot;
  }

  async countLeases(): Promise<number> {
    let count = 0;
    for await (const _ of await this.leases.keys()) count++;
    return count;
  }
}

/** A compare-and-swap that lost ("wrong last sequence") becomes null; anything else rethrows. */
async function casOrNull<T>(op: Promise<T>): Promise<T | null> {
  try {
    return await op;
  } catch (err) {
    if (/wrong last sequence|key exists/i.test(String((err as Error).message))) return null;
    throw err;
  }
}
