// Cluster mode's decisions (docs/architecture.md, "Directory and bus: the cluster seam";
// docs/operations.md, "Cluster mode"). One home per server-id: the instance holding the binary runs today's registry logic for
// it; other instances only hold phone sockets and reach the home through the bus. The directory
// (OwnerStore) says which instance is the home; its revision is the epoch that fences stale
// records. Frames travel as sequenced records in per-tick batches; a gap or a stale epoch closes
// the phone (1011) and is counted, never delivered.

import { createHash } from 'node:crypto';
import type { Logger } from '../log.js';
import type { ClusterMetrics, ClusterGaugeSource, LinkDrop } from '../metrics/cluster-metrics.js';
import type { CloseReason } from '../metrics/metrics.js';
import {
  CLOSE_GOING_AWAY,
  CLOSE_INTERNAL_ERROR,
  CLOSE_NORMAL,
  CLOSE_SERVICE_RESTART,
  FENCED_REASON,
  HEARTBEAT_TIMEOUT_CODE,
  HEARTBEAT_TIMEOUT_REASON,
  LINK_GAP_REASON,
  LINK_LOST_REASON,
  RECLAIM_EVICT_CODE,
  RECLAIM_EVICT_REASON,
  STALE_EPOCH_REASON,
} from '../protocol/close-codes.js';
import { closeNotice } from '../protocol/envelope.js';
import type { Answer, ClusterHost, ClusterRole, Directory, DirectoryUnavailable } from '../session/directory.js';
import type { BinaryLink, PhoneLink } from '../session/links.js';
import type { ClaimDecision, RegisterDecision, Registry, TakeoverDecision } from '../session/registry.js';
import type { Bus, OwnerEntry, OwnerStore } from './bus.js';
import { BatchWriter, readBatch, REC, type LinkRecord, type RecordKind } from './codec.js';
import { RemoteBinary, RemoteIncumbent, RemotePhone, type LinkSender } from './links.js';

/** A register request waits this long for the home; then the phone gets 4404 (no home answered). */
export const REGISTER_TIMEOUT_MS = 2_000;
/** A probe request waits the probe timeout plus this (the home itself probes for probeTimeout). */
export const PROBE_MARGIN_MS = 1_000;
/** Claims retry a lost compare-and-swap this many times before giving up with 503-like 1013. */
const CLAIM_ATTEMPTS = 4;
/** A cross-instance phone is given up after this many audits in a row found the other side
 * without it (two: a record or a reply in flight during one audit is settled by the next). */
export const AUDIT_MISSES_TO_DROP = 2;
/** An audit asks about at most this many conn_ids at once (one request stays small). */
const AUDIT_BATCH = 1_000;
/** A batch is sent at once when it reaches this size (NATS max_payload is 1 MiB by default). */
export const BATCH_FLUSH_BYTES = 64 * 1024;

export interface RoleOptions {
  instanceId: string;
  /** Random per process start: tells a restarted instance from its previous life. */
  boot: string;
  leaseMs: number;
  bus: Bus;
  store: OwnerStore;
  metrics: ClusterMetrics;
  log: Logger;
  /** Test-only fault hook: drop every Nth frame record towards phones after numbering it (0 = off). */
  dropEveryN: number;
}

/** The directory key of a server-id: hashed, so ids stay out of the engine's key space. */
export function ownerKey(serverId: string): string {
  return createHash('sha256').update(serverId).digest('base64url');
}

interface Homed {
  key: string;
  epoch: number;
}

interface HeldPhone {
  phone: PhoneLink;
  remote: RemoteBinary;
  seqOut: number;
  seqIn: number;
  /** Audits in a row that found the home without this phone. */
  auditMisses: number;
}

type ProbeReply = { state: 'alive' | 'dead' | 'grace' | 'absent'; graceStartedAtMs?: number };
type RegisterReply = { result: RegisterDecision };

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const ENGINE_DOWN = new Error('relay link lost');

export class ClusterRoleImpl implements ClusterRole, Directory, LinkSender, ClusterGaugeSource {
  readonly directory: Directory = this;
  private readonly self: string;
  /** Slots homed here, with their epoch. */
  private readonly homed = new Map<string, Homed>();
  /** Server-ids whose directory write from this instance (a claim, a reclaim, a takeover) is in
   * flight, resolved once its outcome is installed. A probe arriving meanwhile waits for it: the
   * write may already be in the directory, and answering 'absent' then let a simultaneous claim
   * elsewhere reclaim the slot from under the binary that won it (1011 instead of 4409). */
  private readonly writing = new Map<string, Promise<void>>();
  private readonly keyToServer = new Map<string, string>();
  /** At the home: proxies of phones held elsewhere, by conn_id. */
  private readonly proxies = new Map<string, RemotePhone>();
  /** At a holder: the binary proxy per server-id homed elsewhere... */
  private readonly remotes = new Map<string, RemoteBinary>();
  /** ...and the phones held here through one, by conn_id. */
  private readonly held = new Map<string, HeldPhone>();
  private readonly writers = new Map<string, BatchWriter>();
  private readonly writerFrames = new Map<string, number>();
  private flushScheduled = false;
  private inflight = 0;
  private fenced = false;
  private stopped = false;
  /** performance.now() after which this instance must consider its lease lost. */
  private leaseDeadline: number;
  private renewTimer: ReturnType<typeof setInterval> | undefined;
  private renewing = false;
  private auditing = false;
  private renewCount = 0;
  instancesSeen = 1;
  private dropCounter = 0;

  constructor(
    private readonly options: RoleOptions,
    private readonly local: Registry<BinaryLink, PhoneLink>,
    private readonly host: ClusterHost,
  ) {
    this.self = options.instanceId;
    this.leaseDeadline = performance.now() + options.leaseMs;
    options.bus.listen({ batch: (b) => this.onBatch(b), request: (b) => this.onRequest(b) });
    options.bus.onStatus((connected) => this.onEngineStatus(connected));
    this.renewTimer = setInterval(() => void this.renew(), Math.max(1, Math.floor(options.leaseMs / 3)));
    this.renewTimer.unref();
  }

  // ---- Gauges ----

  get engineConnected(): boolean {
    return this.options.bus.connected;
  }

  get remotePhones(): number {
    return this.held.size;
  }

  get homedRemotePhones(): number {
    return this.proxies.size;
  }

  get inflightBytes(): number {
    return this.inflight;
  }

  counts(): { binaries: number; phones: number } {
    const c = this.local.counts();
    return { binaries: c.binaries, phones: c.phones - this.proxies.size + this.held.size };
  }

  parkedPhones(): number {
    return this.local.parkedPhones();
  }

  // ---- Admission ----

  refuses(endpoint: 'server' | 'client', serverId: string): boolean {
    if (this.fenced || this.stopped) {
      this.options.metrics.refused(endpoint, 'fenced');
      return true;
    }
    if (this.options.bus.connected) return false;
    // Phones of a binary held here still register while the lease holds.
    if (endpoint === 'client' && this.homed.has(serverId)) return false;
    this.options.metrics.refused(endpoint, 'engine_down');
    return true;
  }

  private get unavailable(): boolean {
    return this.fenced || this.stopped || !this.options.bus.connected;
  }

  // ---- Directory ----

  claim(serverId: string, binary: BinaryLink): Answer<ClaimDecision<BinaryLink, PhoneLink> | DirectoryUnavailable> {
    // A slot homed here runs the single-process logic, synchronously.
    if (this.homed.has(serverId)) return this.local.claim(serverId, binary);
    if (this.unavailable) return { kind: 'unavailable' };
    return this.claimRemote(serverId, binary);
  }

  private async claimRemote(
    serverId: string,
    binary: BinaryLink,
  ): Promise<ClaimDecision<BinaryLink, PhoneLink> | DirectoryUnavailable> {
    const { store } = this.options;
    const key = ownerKey(serverId);
    try {
      for (let attempt = 0; attempt < CLAIM_ATTEMPTS; attempt++) {
        if (this.homed.has(serverId)) return this.local.claim(serverId, binary);
        const entry = await store.get(key);
        if (this.homed.has(serverId)) return this.local.claim(serverId, binary);
        if (entry === null) {
          const written = this.startWrite(serverId);
          try {
            const revision = await store.create(key, this.self, this.options.boot);
            if (revision === null) continue;
            return this.install(serverId, key, revision, binary, false, undefined);
          } finally {
            written();
          }
        }
        const state = await this.probeHome(serverId, entry);
        if (this.homed.has(serverId)) return this.local.claim(serverId, binary);
        if (state.state === 'alive' || state.state === 'dead') {
          // A connected binary holds it: the session runs the conflict path with this answer.
          return { kind: 'held', incumbent: new RemoteIncumbent(key, entry.revision, state.state === 'alive') };
        }
        // In grace at its home, or the home (or its slot) is gone: a reclaim.
        const written = this.startWrite(serverId);
        try {
          const revision = await store.update(key, this.self, this.options.boot, entry.revision);
          if (revision === null) continue;
          return this.install(serverId, key, revision, binary, true, state.graceStartedAtMs);
        } finally {
          written();
        }
      }
      return { kind: 'unavailable' };
    } catch {
      return { kind: 'unavailable' };
    }
  }

  takeover(
    serverId: string,
    binary: BinaryLink,
    incumbent: BinaryLink,
  ): Answer<TakeoverDecision<BinaryLink, PhoneLink> | DirectoryUnavailable> {
    if (!(incumbent instanceof RemoteIncumbent)) return this.local.takeover(serverId, binary, incumbent);
    if (this.unavailable) return { kind: 'unavailable' };
    return this.takeoverRemote(serverId, binary, incumbent);
  }

  private async takeoverRemote(
    serverId: string,
    binary: BinaryLink,
    incumbent: RemoteIncumbent,
  ): Promise<TakeoverDecision<BinaryLink, PhoneLink> | DirectoryUnavailable> {
    const written = this.startWrite(serverId);
    try {
      const revision = await this.options.store.update(incumbent.key, this.self, this.options.boot, incumbent.revision);
      if (revision === null || this.homed.has(serverId)) return { kind: 'conflict' };
      const decision = this.install(serverId, incumbent.key, revision, binary, false, undefined);
      if (decision.kind !== 'claimed') return { kind: 'conflict' };
      return { kind: 'claimed', evicted: decision.evicted, displaced: undefined };
    } catch {
      return { kind: 'unavailable' };
    } finally {
      written();
    }
  }

  /** Marks a directory write for `serverId` as in flight; the returned function ends it (after its
   * outcome is installed). Writes are single key-value operations, never a probe, so a probe that
   * waits for one cannot wait on itself. */
  private startWrite(serverId: string): () => void {
    let end!: () => void;
    const settled = new Promise<void>((resolve) => {
      end = resolve;
    });
    this.writing.set(serverId, settled);
    return () => {
      if (this.writing.get(serverId) === settled) this.writing.delete(serverId);
      end();
    };
  }

  /** The directory now names this instance at `epoch`: hold the slot locally and tell everyone
   * (the previous home and the holders of its phones drop what belonged to older epochs). */
  private install(
    serverId: string,
    key: string,
    epoch: number,
    binary: BinaryLink,
    reclaimed: boolean,
    graceStartedAtMs: number | undefined,
  ): ClaimDecision<BinaryLink, PhoneLink> {
    this.dropOlder(serverId, key, epoch);
    this.homed.set(serverId, { key, epoch });
    this.keyToServer.set(key, serverId);
    const decision = this.local.claim(serverId, binary);
    this.broadcast(REC.evict, epoch, key);
    if (decision.kind !== 'claimed') return decision;
    return graceStartedAtMs === undefined
      ? { kind: 'claimed', reclaimed, evicted: decision.evicted }
      : { kind: 'claimed', reclaimed, evicted: decision.evicted, graceStartedAtMs };
  }

  release(serverId: string, binary: BinaryLink): boolean {
    return this.local.release(serverId, binary);
  }

  registerPhone(serverId: string, phone: PhoneLink): Answer<RegisterDecision | 'unavailable'> {
    if (this.homed.has(serverId)) {
      if (this.fenced) return 'unavailable';
      return this.local.registerPhone(serverId, phone);
    }
    if (this.unavailable) return 'unavailable';
    return this.registerRemote(serverId, phone);
  }

  private async registerRemote(serverId: string, phone: PhoneLink): Promise<RegisterDecision | 'unavailable'> {
    const key = ownerKey(serverId);
    let entry: OwnerEntry | null;
    try {
      entry = await this.options.store.get(key);
    } catch {
      return 'unavailable';
    }
    if (this.homed.has(serverId)) return this.local.registerPhone(serverId, phone);
    if (entry === null || entry.home === this.self) return 'no_server';
    const body = { op: 'register', serverId, connId: phone.connId, holder: this.self, epoch: entry.revision };
    const outcome = await this.options.bus.request(
      entry.home,
      encoder.encode(JSON.stringify(body)),
      REGISTER_TIMEOUT_MS,
    );
    // No answer in time (a stalled home): try again later, not "no server"; if the home still
    // registers it, its next audit finds this instance without the phone and drops it.
    if (outcome.kind === 'down' || outcome.kind === 'timeout') return 'unavailable';
    if (outcome.kind !== 'reply') return 'no_server';
    const reply = JSON.parse(decoder.decode(outcome.body)) as RegisterReply;
    if (reply.result !== 'ok') return reply.result;
    let remote = this.remotes.get(serverId);
    if (remote === undefined || remote.epoch !== entry.revision) {
      remote = new RemoteBinary(this, serverId, key, entry.home, entry.boot, entry.revision);
      this.remotes.set(serverId, remote);
      this.keyToServer.set(key, serverId);
    }
    remote.phones++;
    this.held.set(phone.connId, { phone, remote, seqOut: 0, seqIn: 0, auditMisses: 0 });
    return 'ok';
  }

  unregisterPhone(serverId: string, phone: PhoneLink): boolean {
    const held = this.held.get(phone.connId);
    if (held === undefined || held.phone !== phone) return this.local.unregisterPhone(serverId, phone);
    this.held.delete(phone.connId);
    const remote = held.remote;
    this.send(remote.home, REC.gone, remote.epoch, 0, 0, phone.connId, null);
    if (--remote.phones === 0 && this.remotes.get(serverId) === remote) {
      clearTimeout(remote.orphanTimer);
      this.remotes.delete(serverId);
      this.forgetKey(serverId);
    }
    return true;
  }

  /** The key of a server-id neither homed nor reached here any more is forgotten (the map would
   * otherwise gain an entry per server-id ever seen). */
  private forgetKey(serverId: string): void {
    if (!this.homed.has(serverId) && !this.remotes.has(serverId)) this.keyToServer.delete(ownerKey(serverId));
  }

  binaryFor(serverId: string): BinaryLink | undefined {
    if (performance.now() > this.leaseDeadline) this.fence('lease_lost');
    return this.local.binaryFor(serverId) ?? this.remotes.get(serverId);
  }

  phoneFor(serverId: string, connId: string): PhoneLink | undefined {
    // Checked per binary frame: a home that was stopped past its lease must not deliver one more.
    if (performance.now() > this.leaseDeadline) this.fence('lease_lost');
    return this.local.phoneFor(serverId, connId);
  }

  // ---- Grace ----

  graceExpired(serverId: string, phones: PhoneLink[], expired: (phones: PhoneLink[]) => void): void {
    const homed = this.homed.get(serverId);
    this.homed.delete(serverId);
    this.forgetKey(serverId);
    if (homed === undefined) {
      expired(phones);
      return;
    }
    // Only the instance whose delete wins counts the expiry (a reclaim elsewhere may race it).
    this.options.store.delete(homed.key, homed.epoch).then(
      (won) => {
        if (won) expired(phones);
        else for (const phone of phones) phone.closeWith(RECLAIM_EVICT_CODE, RECLAIM_EVICT_REASON, 'evicted_4404');
      },
      // The engine cannot say: nobody else could claim meanwhile (claims need it), so this one counts.
      () => expired(phones),
    );
  }

  /** A home we depend on lost its lease: hold its phones for one grace window, then race the
   * other holders to delete its entry; the winner counts the expiry. */
  private orphaned(remote: RemoteBinary): void {
    if (remote.orphanTimer !== undefined) return;
    remote.orphanTimer = setTimeout(() => {
      const phones = this.phonesOf(remote);
      const close = (code: number, reason: string, why: CloseReason): void => {
        for (const phone of phones) phone.closeWith(code, reason, why);
      };
      this.options.store.delete(remote.key, remote.epoch).then(
        (won) => {
          if (won) this.host.graceExpired(phones);
          else close(CLOSE_NORMAL, '', 'grace_expired');
        },
        () => close(CLOSE_SERVICE_RESTART, LINK_LOST_REASON, 'other_code'),
      );
    }, this.host.gracePeriodMs);
  }

  private phonesOf(remote: RemoteBinary): PhoneLink[] {
    const phones: PhoneLink[] = [];
    for (const held of this.held.values()) if (held.remote === remote) phones.push(held.phone);
    return phones;
  }

  // ---- Home side of the records (LinkSender for RemotePhone) ----

  phoneFrame(phone: RemotePhone, frame: Buffer | null, closeCode: number): void {
    const seq = phone.seqOut++;
    if (frame !== null) {
      const metrics = this.options.metrics;
      metrics.linkFramesOut++;
      metrics.linkBytesOut += frame.length;
      if (this.options.dropEveryN > 0 && ++this.dropCounter % this.options.dropEveryN === 0) return;
    }
    this.send(phone.holder, REC.toPhone, phone.epoch, seq, closeCode, phone.connId, frame);
  }

  phoneControl(phone: RemotePhone, kind: 'pause' | 'resume'): void {
    this.send(phone.holder, kind === 'pause' ? REC.pause : REC.resume, phone.epoch, 0, 0, phone.connId, null);
  }

  phoneClosed(phone: RemotePhone, code: number, reason: string, why: CloseReason): void {
    if (this.proxies.get(phone.connId) === phone) this.proxies.delete(phone.connId);
    this.local.unregisterPhone(phone.serverId, phone);
    this.send(phone.holder, REC.close, phone.epoch, 0, code, phone.connId, Buffer.from(`${why}\n${reason}`));
  }

  phoneForwarded(phone: RemotePhone, err: Error | undefined, bytes: number): void {
    const metrics = this.host.metrics;
    if (err === undefined) {
      metrics.framesPhoneToBinary++;
      metrics.bytesForwardedPhoneToBinary += bytes;
      this.local.binaryFor(phone.serverId)?.drained();
      return;
    }
    metrics.droppedPhoneToBinary.write_failed++;
    phone.closeWith(CLOSE_NORMAL, '', 'forward_failed');
  }

  // ---- Holder side of the records (LinkSender for RemoteBinary) ----

  binaryFrame(remote: RemoteBinary, phone: PhoneLink, envelope: Buffer): void {
    const held = this.held.get(phone.connId);
    if (held === undefined) return;
    const metrics = this.options.metrics;
    metrics.linkFramesOut++;
    metrics.linkBytesOut += envelope.length;
    this.send(remote.home, REC.toBinary, remote.epoch, held.seqOut++, 0, phone.connId, envelope);
  }

  binaryNotice(remote: RemoteBinary, notice: Buffer, done: (err: Error | undefined) => void): void {
    // The notice's conn_id is the phone's; it travels as the record's conn_id too.
    const connId = (JSON.parse(notice.toString('utf8')) as { conn_id: string }).conn_id;
    const held = this.held.get(connId);
    const seq = held === undefined ? 0 : held.seqOut++;
    if (!this.options.bus.connected) {
      done(ENGINE_DOWN);
      return;
    }
    this.send(remote.home, REC.notice, remote.epoch, seq, 0, connId, notice);
    done(undefined);
  }

  // ---- Sending ----

  private send(
    instance: string,
    kind: RecordKind,
    epoch: number,
    seq: number,
    code: number,
    connId: string,
    payload: Buffer | null,
  ): void {
    let writer = this.writers.get(instance);
    if (writer === undefined) {
      writer = new BatchWriter();
      this.writers.set(instance, writer);
    }
    this.inflight += writer.add(kind, epoch, seq, code, connId, payload);
    if ((kind === REC.toPhone || kind === REC.toBinary) && payload !== null) {
      this.writerFrames.set(instance, (this.writerFrames.get(instance) ?? 0) + 1);
    }
    if (writer.bytes >= BATCH_FLUSH_BYTES) this.flushOne(instance, writer);
    else if (!this.flushScheduled) {
      this.flushScheduled = true;
      process.nextTick(this.flush);
    }
  }

  private broadcast(kind: RecordKind, epoch: number, key: string): void {
    const writer = new BatchWriter();
    writer.add(kind, epoch, 0, 0, key, null);
    this.options.bus.broadcast(writer.take());
  }

  private readonly flush = (): void => {
    this.flushScheduled = false;
    for (const [instance, writer] of this.writers) if (!writer.empty) this.flushOne(instance, writer);
  };

  private flushOne(instance: string, writer: BatchWriter): void {
    this.inflight -= writer.bytes;
    const frames = this.writerFrames.get(instance) ?? 0;
    this.writerFrames.set(instance, 0);
    if (!this.options.bus.publish(instance, writer.take())) this.options.metrics.linkDropped.engine_down += frames;
  }

  // ---- Receiving ----

  private onBatch(batch: Uint8Array): void {
    readBatch(batch, (record) => this.onRecord(record));
  }

  private drop(reason: LinkDrop, count = 1): void {
    this.options.metrics.linkDropped[reason] += count;
  }

  private onRecord(r: LinkRecord): void {
    switch (r.kind) {
      case REC.toPhone:
        this.onToPhone(r);
        return;
      case REC.toBinary:
      case REC.notice:
        this.onToBinary(r);
        return;
      case REC.gone: {
        const proxy = this.proxies.get(r.connId);
        if (proxy === undefined || proxy.epoch !== r.epoch) return;
        this.dropProxy(proxy);
        return;
      }
      case REC.close: {
        const held = this.held.get(r.connId);
        if (held === undefined || held.remote.epoch !== r.epoch) return;
        const text = r.payload === null ? '\n' : r.payload.toString('utf8');
        const cut = text.indexOf('\n');
        held.phone.closeWith(r.code, text.slice(cut + 1), text.slice(0, cut) as CloseReason);
        return;
      }
      case REC.pause:
      case REC.resume: {
        const held = this.held.get(r.connId);
        if (held === undefined || held.remote.epoch !== r.epoch) return;
        if (r.kind === REC.pause) held.phone.pauseReading();
        else held.phone.resumeReading();
        return;
      }
      case REC.evict:
        this.onEvict(r.connId, r.epoch);
        return;
    }
  }

  private onToPhone(r: LinkRecord): void {
    const held = this.held.get(r.connId);
    const frames = r.payload === null ? 0 : 1;
    if (held === undefined) {
      this.drop('unknown_conn', frames);
      return;
    }
    if (held.remote.epoch !== r.epoch) {
      this.drop('stale_epoch', frames);
      held.phone.closeWith(CLOSE_INTERNAL_ERROR, STALE_EPOCH_REASON, 'other_code');
      return;
    }
    if (r.seq !== held.seqIn) {
      // The missing records and this one: none is delivered, the phone's stream is broken.
      this.drop('seq_gap', Math.max(0, r.seq - held.seqIn) + frames);
      this.options.log.warn('cluster_link_gap', { conn_id: r.connId });
      held.phone.closeWith(CLOSE_INTERNAL_ERROR, LINK_GAP_REASON, 'other_code');
      return;
    }
    held.seqIn++;
    if (r.payload !== null) {
      this.options.metrics.linkFramesIn++;
      this.options.metrics.linkBytesIn += r.payload.length;
    }
    held.phone.deliver(r.payload, r.code);
  }

  private onToBinary(r: LinkRecord): void {
    const proxy = this.proxies.get(r.connId);
    const frames = r.kind === REC.toBinary ? 1 : 0;
    if (proxy === undefined) {
      this.drop('unknown_conn', frames);
      return;
    }
    if (proxy.epoch !== r.epoch || this.homed.get(proxy.serverId)?.epoch !== r.epoch) {
      this.drop('stale_epoch', frames);
      proxy.closeWith(CLOSE_INTERNAL_ERROR, STALE_EPOCH_REASON, 'other_code');
      return;
    }
    if (r.seq !== proxy.seqIn) {
      this.drop('seq_gap', Math.max(0, r.seq - proxy.seqIn) + frames);
      proxy.closeWith(CLOSE_INTERNAL_ERROR, LINK_GAP_REASON, 'other_code');
      return;
    }
    proxy.seqIn++;
    const payload = r.payload ?? Buffer.alloc(0);
    const binary = this.local.binaryFor(proxy.serverId);
    if (r.kind === REC.notice) {
      if (binary !== undefined && binary === proxy.binaryAtRegistration) binary.notify(payload, () => {});
      return;
    }
    this.options.metrics.linkFramesIn++;
    this.options.metrics.linkBytesIn += payload.length;
    if (binary === undefined) {
      this.host.metrics.droppedPhoneToBinary.no_binary++;
      proxy.closeWith(CLOSE_NORMAL, '', 'no_binary');
      return;
    }
    binary.forward(proxy, payload);
  }

  /** A claim at `epoch` moved the server-id with this key: drop what belonged to older epochs. */
  private onEvict(key: string, epoch: number): void {
    const serverId = this.keyToServer.get(key);
    if (serverId === undefined) return;
    this.dropOlder(serverId, key, epoch);
  }

  private dropOlder(serverId: string, _key: string, epoch: number): void {
    const homed = this.homed.get(serverId);
    if (homed !== undefined && homed.epoch < epoch) {
      this.homed.delete(serverId);
      this.forgetKey(serverId);
      const { binary, phones } = this.local.forget(serverId);
      if (binary !== undefined) {
        this.options.metrics.fenced('superseded');
        // What the single-process takeover sends the displaced binary (binary-session.ts).
        binary.closeWith(HEARTBEAT_TIMEOUT_CODE, HEARTBEAT_TIMEOUT_REASON, 'taken_over');
      }
      for (const phone of phones) phone.closeWith(RECLAIM_EVICT_CODE, RECLAIM_EVICT_REASON, 'evicted_4404');
    }
    const remote = this.remotes.get(serverId);
    if (remote !== undefined && remote.epoch < epoch) {
      clearTimeout(remote.orphanTimer);
      this.remotes.delete(serverId);
      this.forgetKey(serverId);
      for (const phone of this.phonesOf(remote)) {
        phone.closeWith(RECLAIM_EVICT_CODE, RECLAIM_EVICT_REASON, 'evicted_4404');
      }
    }
  }

  // ---- Requests (this instance as a home) ----

  private async onRequest(body: Uint8Array): Promise<Uint8Array> {
    const req = JSON.parse(decoder.decode(body)) as {
      op: string;
      serverId: string;
      connId?: string;
      holder?: string;
      epoch?: number;
      /** audit: who asks (a home about its proxies, a holder about its phones), and about what. */
      from?: string;
      as?: 'home' | 'holder';
      connIds?: string[];
    };
    if (req.op === 'audit') return encoder.encode(JSON.stringify(this.answerAudit(req)));
    const reply = req.op === 'probe' ? await this.answerProbe(req.serverId) : this.answerRegister(req);
    return encoder.encode(JSON.stringify(reply));
  }

  // ---- Audits ----
  // A home and the instance holding one of its phones know about each other only through records,
  // so when one side's state goes away out of band (a holder killed, a registration the holder
  // gave up on, one instance's engine connection dropping) the other side kept its half for good:
  // dead phones filled the phone cap and their binary was never told, or a phone stayed open with
  // every frame lost. On every lease renewal each side asks the other which of its cross-instance
  // phones it still knows; one missing AUDIT_MISSES_TO_DROP times in a row is given up.

  /** The conn_ids of `connIds` this instance does not know in the asked role. */
  private answerAudit(req: { from?: string; as?: 'home' | 'holder'; connIds?: string[] }): { missing: string[] } {
    const missing: string[] = [];
    for (const connId of req.connIds ?? []) {
      // A home asks its phones' holder; a holder asks the home of its phones.
      const known =
        req.as === 'home'
          ? this.held.get(connId)?.remote.home === req.from
          : this.proxies.get(connId)?.holder === req.from;
      if (!known) missing.push(connId);
    }
    return { missing };
  }

  private async audit(): Promise<void> {
    this.auditing = true;
    try {
      await this.auditHolders();
      await this.auditHomes();
    } catch {
      // The engine could not answer: the next renewal audits again.
    } finally {
      this.auditing = false;
    }
  }

  /** As a home: which of my proxies do their holders still hold? */
  private auditHolders(): Promise<void> {
    return this.auditAgainst(
      'home',
      this.proxies.values(),
      (proxy) => proxy.holder,
      (proxy) => proxy.connId,
      (proxy) => this.proxies.get(proxy.connId) === proxy,
      (proxy) => {
        // Its socket is gone with nothing said (the holder died, gave up on it, or lost its engine
        // connection): for its binary that is a phone whose TCP ended without a close frame.
        this.dropProxy(proxy, CLOSE_GOING_AWAY);
      },
    );
  }

  /** As a holder: which of my phones do their homes still know? */
  private auditHomes(): Promise<void> {
    return this.auditAgainst(
      'holder',
      this.held.values(),
      (held) => held.remote.home,
      (held) => held.phone.connId,
      (held) => this.held.get(held.phone.connId) === held,
      (held) => {
        // Its home no longer knows it: nothing it sends arrives, nothing for it comes.
        held.phone.closeWith(CLOSE_SERVICE_RESTART, LINK_LOST_REASON, 'other_code');
      },
    );
  }

  /** One side of an audit: asks each other instance about the entries it shares with this one;
   * an entry still here that the other side missed AUDIT_MISSES_TO_DROP times in a row is given up. */
  private async auditAgainst<T extends { auditMisses: number }>(
    as: 'home' | 'holder',
    entries: Iterable<T>,
    otherSide: (entry: T) => string,
    connIdOf: (entry: T) => string,
    stillHere: (entry: T) => boolean,
    giveUp: (entry: T) => void,
  ): Promise<void> {
    const byInstance = new Map<string, T[]>();
    for (const entry of entries) {
      const list = byInstance.get(otherSide(entry));
      if (list === undefined) byInstance.set(otherSide(entry), [entry]);
      else list.push(entry);
    }
    for (const [instance, list] of byInstance) {
      const missing = await this.askAudit(instance, as, list.map(connIdOf));
      if (missing === undefined) continue;
      for (const entry of list) {
        if (!missing.has(connIdOf(entry)) || !stillHere(entry)) {
          entry.auditMisses = 0;
          continue;
        }
        if (++entry.auditMisses < AUDIT_MISSES_TO_DROP) continue;
        this.options.metrics.auditDropped(as);
        giveUp(entry);
      }
    }
  }

  /** The conn_ids `instance` does not know, or undefined when it could not say (no answer in
   * time, or the engine is down). A holder with no responder is gone, and so are its phones' sockets;
   * a home with no responder is left to the lease watch (checkHomes): its phones wait out the grace
   * window, as for any home that died. */
  private async askAudit(instance: string, as: 'home' | 'holder', connIds: string[]): Promise<Set<string> | undefined> {
    const missing = new Set<string>();
    for (let i = 0; i < connIds.length; i += AUDIT_BATCH) {
      const slice = connIds.slice(i, i + AUDIT_BATCH);
      const body = encoder.encode(JSON.stringify({ op: 'audit', serverId: '', from: this.self, as, connIds: slice }));
      const outcome = await this.options.bus.request(instance, body, REGISTER_TIMEOUT_MS);
      if (outcome.kind === 'no_responders') {
        if (as === 'holder') return undefined;
        for (const connId of slice) missing.add(connId);
        continue;
      }
      if (outcome.kind !== 'reply') return undefined;
      for (const connId of (JSON.parse(decoder.decode(outcome.body)) as { missing: string[] }).missing) {
        missing.add(connId);
      }
    }
    return missing;
  }

  private async answerProbe(serverId: string): Promise<ProbeReply> {
    // A claim of ours may be in the directory already, its answer on its way back here.
    for (let write = this.writing.get(serverId); write !== undefined; write = this.writing.get(serverId)) await write;
    if (!this.homed.has(serverId) || this.fenced) return { state: 'absent' };
    const graceStartedAtMs = this.local.graceStartedAt(serverId);
    if (graceStartedAtMs !== undefined) return { state: 'grace', graceStartedAtMs };
    const binary = this.local.binaryFor(serverId);
    if (binary === undefined) return { state: 'absent' };
    return { state: (await binary.probe(this.host.probeTimeoutMs)) ? 'alive' : 'dead' };
  }

  private answerRegister(req: { serverId: string; connId?: string; holder?: string; epoch?: number }): RegisterReply {
    const homed = this.homed.get(req.serverId);
    if (homed === undefined || homed.epoch !== req.epoch || this.fenced || req.connId === undefined) {
      return { result: 'no_server' };
    }
    const binary = this.local.binaryFor(req.serverId);
    const proxy = new RemotePhone(this, req.serverId, req.connId, req.holder ?? '', homed.epoch, binary);
    const result = this.local.registerPhone(req.serverId, proxy);
    if (result === 'ok') this.proxies.set(req.connId, proxy);
    return { result };
  }

  // ---- Probing another home ----

  private async probeHome(serverId: string, entry: OwnerEntry): Promise<ProbeReply> {
    const { bus, store, metrics } = this.options;
    if (!(await store.leaseHeld(entry.home, entry.boot))) {
      metrics.probe('dead');
      return { state: 'absent' };
    }
    const body = encoder.encode(JSON.stringify({ op: 'probe', serverId }));
    const outcome = await bus.request(entry.home, body, this.host.probeTimeoutMs + PROBE_MARGIN_MS);
    switch (outcome.kind) {
      case 'reply': {
        const reply = JSON.parse(decoder.decode(outcome.body)) as ProbeReply;
        metrics.probe(reply.state === 'absent' ? 'dead' : reply.state);
        // A probe that found the binary dead is a takeover (the session's conflict path).
        return reply;
      }
      case 'no_responders':
        metrics.probe('no_responders');
        return { state: 'absent' };
      case 'timeout':
        metrics.probe('timeout');
        return { state: 'dead' };
      case 'down':
        throw ENGINE_DOWN;
    }
  }

  // ---- Lease, fencing, engine status ----

  private async renew(): Promise<void> {
    // Checked on every tick, even while a renewal hangs on an unreachable engine.
    if (performance.now() > this.leaseDeadline && !this.stopped) this.fence('lease_lost');
    if (this.renewing || this.stopped) return;
    this.renewing = true;
    const started = performance.now();
    try {
      await this.options.store.renewLease();
      // Before this renewal was sent the lease was still held, so it now runs from `started`.
      this.leaseDeadline = started + this.options.leaseMs;
      if (this.fenced && this.options.bus.connected) {
        this.fenced = false;
        this.options.log.info('cluster_unfenced', { instance_id: this.self });
      }
      if (this.renewCount++ % 3 === 0) this.instancesSeen = await this.options.store.countLeases();
      await this.checkHomes();
      // On its own: an audit waits on other instances, and must never hold up the next renewal.
      if (!this.auditing) void this.audit();
    } catch {
      // The deadline check above fences once the lease is really gone.
    } finally {
      this.renewing = false;
    }
  }

  /** Holders watch the leases of the homes their phones depend on. */
  private async checkHomes(): Promise<void> {
    const seen = new Map<string, boolean>();
    for (const remote of [...this.remotes.values()]) {
      const id = `${remote.home}/${remote.homeBoot}`;
      let alive = seen.get(id);
      if (alive === undefined) {
        alive = await this.options.store.leaseHeld(remote.home, remote.homeBoot);
        seen.set(id, alive);
      }
      if (!alive) this.orphaned(remote);
    }
  }

  /** The lease ran out: this instance can no longer prove it still owns its slots. Close every
   * binary homed here and every cross-instance phone with 1012 and refuse new work until a renewal
   * succeeds again. */
  private fence(reason: 'lease_lost'): void {
    if (this.fenced) return;
    this.fenced = true;
    this.options.metrics.fenced(reason);
    this.options.log.warn('cluster_fenced', { instance_id: this.self, reason });
    for (const serverId of [...this.homed.keys()]) {
      this.homed.delete(serverId);
      this.forgetKey(serverId);
      const { binary, phones } = this.local.forget(serverId);
      binary?.closeWith(CLOSE_SERVICE_RESTART, FENCED_REASON, 'other_code');
      for (const phone of phones) phone.closeWith(CLOSE_SERVICE_RESTART, FENCED_REASON, 'other_code');
    }
    this.closeHeld(FENCED_REASON);
  }

  private closeHeld(reason: string): void {
    for (const held of [...this.held.values()]) held.phone.closeWith(CLOSE_SERVICE_RESTART, reason, 'other_code');
  }

  private onEngineStatus(connected: boolean): void {
    if (connected) {
      this.options.log.info('cluster_engine_connected', { instance_id: this.self });
      return;
    }
    this.options.log.warn('cluster_engine_disconnected', { instance_id: this.self });
    // Cross-instance phones cannot be served: close them here (1012)...
    this.closeHeld(LINK_LOST_REASON);
    // ...and tell the binaries homed here about their phones held elsewhere.
    for (const proxy of [...this.proxies.values()]) this.dropProxy(proxy, CLOSE_SERVICE_RESTART);
  }

  /** Forgets a phone held elsewhere; with `noticeCode`, its binary is told (if it is still the
   * binary the phone registered with). */
  private dropProxy(proxy: RemotePhone, noticeCode?: number): void {
    proxy.closed = true;
    this.proxies.delete(proxy.connId);
    this.local.unregisterPhone(proxy.serverId, proxy);
    if (noticeCode === undefined) return;
    const binary = this.local.binaryFor(proxy.serverId);
    if (binary !== undefined && binary === proxy.binaryAtRegistration) {
      binary.notify(closeNotice(proxy.connId, noticeCode), () => {});
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    clearInterval(this.renewTimer);
    for (const remote of this.remotes.values()) clearTimeout(remote.orphanTimer);
    this.flush();
  }
}
