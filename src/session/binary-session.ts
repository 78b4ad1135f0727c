// /v1/server: one binary's connection from claim to release
// (docs/protocol.md, "What the binary sees when it claims a server-id";
// docs/protocol.md, "What happens when the binary disconnects (grace window)"; docs/protocol.md, "Binary to phone").

import type WebSocket from 'ws';
import {
  CLOSE_TRY_AGAIN_LATER,
  CLUSTER_UNAVAILABLE_REASON,
  CLOSE_NORMAL,
  CONFLICT_CODE,
  CONFLICT_REASON,
  HEARTBEAT_TIMEOUT_CODE,
  HEARTBEAT_TIMEOUT_REASON,
  PING_FLOOD_CODE,
  PING_FLOOD_REASON,
  RECLAIM_EVICT_CODE,
  RECLAIM_EVICT_REASON,
  WRITE_TIMEOUT_CODE,
  WRITE_TIMEOUT_REASON,
} from '../protocol/close-codes.js';
import { binaryConnId } from '../protocol/conn-id.js';
import type { RelayContext } from './context.js';
import { decodeBinaryEnvelope, ENVELOPE_SUFFIX } from '../protocol/envelope.js';
import { Heartbeat, type HeartbeatOwner } from './heartbeat.js';
import { closeReasonFor, type CloseReason } from '../metrics/metrics.js';
import { Peer, type PeerEvents } from './peer.js';
import type { BinaryLink, PhoneLink } from './links.js';
import type { Directory } from './directory.js';

/** ...or while this many sends towards it have not completed. Each waiting WebSocket frame keeps
 * alive the 8 KiB allocation-pool slab its header (and a small envelope) was cut from, so without
 * a count 512 KiB of 45-byte envelopes could pin about 90 MiB (with it, about 1 MiB). */
export const BINARY_SEND_HIGH_WATER_FRAMES = 64;
/** ...and let them go again once at most this many are waiting. */
export const BINARY_SEND_LOW_WATER_FRAMES = 16;
/** Pause phones feeding this binary while this much is queued towards it... */
export const BINARY_SEND_HIGH_WATER_BYTES = 512 * 1024;
/** ...and let them go again once it drained below this. */
export const BINARY_SEND_LOW_WATER_BYTES = 128 * 1024;

type State = 'probing' | 'claimed' | 'rejected' | 'ended';

export interface BinaryHandshake {
  serverId: string;
  binaryVersion: string;
  remote: string;
}

export class BinarySession implements BinaryLink, PeerEvents, HeartbeatOwner {
  readonly peer: Peer;
  readonly connId: string;
  readonly serverId: string;
  private state: State = 'probing';
  private readonly heartbeat: Heartbeat;
  /** Phones paused because this binary's socket is backed up. */
  private readonly pausedPhones = new Set<PhoneLink>();
  /** Why the relay closed this binary (first decision wins); undefined if the peer closed first. */
  private closeReason: CloseReason | undefined;

  constructor(
    private readonly ctx: RelayContext,
    ws: WebSocket,
    private readonly handshake: BinaryHandshake,
    /** Gives back the connection-cap slot (called once the handler ended). */
    readonly releaseSlot: () => void,
    /** Shared by every session of the relay: the session is passed, no closure per connection. */
    private readonly onEnded: (session: BinarySession) => void,
  ) {
    this.serverId = handshake.serverId;
    this.connId = binaryConnId(handshake.serverId);
    this.peer = new Peer(ws, this, ctx.timings.messageReadTimeoutMs);
    this.heartbeat = new Heartbeat(this.peer, ctx.timings.heartbeatIntervalMs, this);
  }

  heartbeatTimedOut(): void {
    this.closeWith(HEARTBEAT_TIMEOUT_CODE, HEARTBEAT_TIMEOUT_REASON, 'heartbeat_timeout');
  }

  /** True while the conflict probe runs (shutdown closes such a connection with 1000). */
  get isProbing(): boolean {
    return this.state === 'probing';
  }

  /** Runs the claim; called once, right after the upgrade. */
  start(): void {
    // Nothing is read until the claim succeeds (the reference starts its read pump only then).
    this.peer.pause();
    const decision = this.ctx.directory.claim(this.serverId, this);
    if (decision instanceof Promise) void decision.then(this.decided);
    else this.decided(decision);
  }

  private readonly decided = (decision: Awaited<ReturnType<Directory['claim']>>): void => {
    if (this.settledAside(decision) || decision.kind === 'unavailable') return; // (the second test only narrows the type)
    if (decision.kind === 'claimed') {
      this.claimed(decision.evicted, decision.graceStartedAtMs);
      return;
    }
    void this.runProbe(decision.incumbent);
  };

  /** What a claim or takeover answer means whatever was asked: the engine could not decide, or
   * the answer came after this connection ended. True when that was the case (and handled). */
  private settledAside(decision: { kind: string; evicted?: PhoneLink[] }): boolean {
    if (decision.kind === 'unavailable') {
      this.unavailable();
      return true;
    }
    if (this.state === 'probing') return false;
    // A cluster answer arrived after this connection ended: give the slot back (grace).
    if (decision.kind === 'claimed') this.lateClaim(decision.evicted!);
    return true;
  }

  private lateClaim(evicted: PhoneLink[]): void {
    for (const phone of evicted) phone.closeWith(RECLAIM_EVICT_CODE, RECLAIM_EVICT_REASON, 'evicted_4404');
    this.ctx.directory.release(this.serverId, this);
  }

  /** A cluster engine could not decide (docs/operations.md, "Cluster mode"). */
  private unavailable(): void {
    if (this.state !== 'probing') return;
    this.state = 'rejected';
    // Counted as other_code: the default scrape has no cluster reasons (cluster families count why).
    this.closeWith(CLOSE_TRY_AGAIN_LATER, CLUSTER_UNAVAILABLE_REASON, 'other_code');
  }

  private async runProbe(incumbent: BinaryLink): Promise<void> {
    const alive = await incumbent.probe(this.ctx.timings.probeTimeoutMs);
    if (this.state !== 'probing') return; // closed meanwhile (shutdown or the challenger left)
    if (this.ctx.draining || this.peer.isClosed) {
      this.state = 'rejected';
      this.closeWith(CLOSE_NORMAL, '', 'probe_aborted');
      return;
    }
    if (!alive) {
      const answer = this.ctx.directory.takeover(this.serverId, this, incumbent);
      const decision = answer instanceof Promise ? await answer : answer;
      if (this.settledAside(decision) || decision.kind === 'unavailable') return; // (the second test only narrows the type)
      if (decision.kind === 'claimed') {
        this.ctx.log.info('server_id_takeover', { server_id: this.serverId, remote: this.handshake.remote });
        // Same code and reason the heartbeat would have sent the dead incumbent.
        decision.displaced?.closeWith(HEARTBEAT_TIMEOUT_CODE, HEARTBEAT_TIMEOUT_REASON, 'taken_over');
        this.claimed(decision.evicted, decision.graceStartedAtMs);
        return;
      }
    }
    this.state = 'rejected';
    this.closeWith(CONFLICT_CODE, CONFLICT_REASON, 'conflict_4409');
    this.ctx.metrics.serverInUse();
    this.ctx.log.info('server_id_conflict', { server_id: this.serverId, remote: this.handshake.remote });
  }

  private claimed(evicted: PhoneLink[], graceStartedAtMs: number | undefined): void {
    this.state = 'claimed';
    this.ctx.metrics.serverAccepted();
    if (graceStartedAtMs !== undefined) this.ctx.metrics.graceReclaimed(Date.now() - graceStartedAtMs);
    this.ctx.log.info('server_claimed', {
      server_id: this.serverId,
      binary_version: this.handshake.binaryVersion,
      remote: this.handshake.remote,
    });
    for (const phone of evicted) phone.closeWith(RECLAIM_EVICT_CODE, RECLAIM_EVICT_REASON, 'evicted_4404');
    this.heartbeat.start();
    this.peer.resume();
  }

  // ---- Phone -> binary (called by phone sessions) ----

  /** Sends one envelope for `phone`; its callback reports success or failure. */
  forward(phone: PhoneLink, envelope: Buffer): void {
    this.peer.send(envelope, phone.onForwarded, envelope.length);
    this.holdBackIfBackedUp(phone);
  }

  forwardJoined(phone: PhoneLink, prefix: Buffer, frame: Buffer, copyFrame: boolean): void {
    const length = prefix.length + frame.length + ENVELOPE_SUFFIX.length;
    this.peer.sendJoined(prefix, frame, ENVELOPE_SUFFIX, phone.onForwarded, length, copyFrame);
    this.holdBackIfBackedUp(phone);
  }

  private holdBackIfBackedUp(phone: PhoneLink): void {
    const backedUp =
      this.peer.bufferedAmount > BINARY_SEND_HIGH_WATER_BYTES || this.peer.pendingSends > BINARY_SEND_HIGH_WATER_FRAMES;
    if (backedUp && !this.peer.isClosed) {
      this.pausedPhones.add(phone);
      phone.pauseReading();
    }
  }

  /** After each completed send (an envelope or a close notice): let paused phones go once the
   * socket drained. Every write to the binary that can leave bytes behind it has a completion
   * that runs this; pings and pongs carry at most 125 bytes. */
  drained(): void {
    if (this.pausedPhones.size === 0) return;
    const backedUp =
      this.peer.bufferedAmount > BINARY_SEND_LOW_WATER_BYTES || this.peer.pendingSends > BINARY_SEND_LOW_WATER_FRAMES;
    if (backedUp && !this.peer.isClosed) return;
    this.resumePhones();
  }

  /** The liveness probe on this binary's socket. */
  probe(timeoutMs: number): Promise<boolean> {
    return this.peer.probe(timeoutMs);
  }

  /** Sends a close notice (not counted as a forwarded frame). Its completion lets held-back
   * phones go like a forwarded envelope's does: when notices were the last writes queued, no
   * envelope completes after the socket drained, and the phones would stay paused for good. */
  notify(notice: Buffer, done: (err: Error | undefined) => void): void {
    this.peer.send(notice, (err) => {
      done(err);
      if (err === undefined) this.drained();
    });
  }

  private resumePhones(): void {
    const phones = [...this.pausedPhones];
    this.pausedPhones.clear();
    for (const phone of phones) phone.resumeReading();
  }

  // ---- Binary -> phone ----

  onMessage(data: Buffer, isBinary: boolean): void {
    const metrics = this.ctx.metrics;
    const envelope = decodeBinaryEnvelope(data, isBinary);
    // A displaced or closing binary must not reach the phones of its successor. What it sends is
    // dropped; control messages (push wakes, close directives without a frame) are not frames
    // here either, so they are not counted.
    if (this.state !== 'claimed' || this.peer.isClosed) {
      if (envelope.kind === 'wake' || (envelope.kind === 'route' && envelope.frame === null)) return;
      metrics.framesReceivedBinaryToPhone++;
      metrics.bytesReceivedBinaryToPhone += data.length;
      metrics.droppedBinaryToPhone.closing++;
      return;
    }
    switch (envelope.kind) {
      case 'malformed':
        metrics.framesReceivedBinaryToPhone++;
        metrics.bytesReceivedBinaryToPhone += data.length;
        metrics.droppedBinaryToPhone.malformed_envelope++;
        this.ctx.log.warn('binary_forwarder_unmarshal_err', {
          server_id: this.serverId,
          binary_conn_id: this.connId,
          err: envelope.err,
        });
        return;
      case 'wake':
        // Admitted or refused (and logged) at once; the send runs on its own, never blocking this read loop.
        this.ctx.push.wake(this.serverId, this.connId, envelope.pushWake);
        return;
      case 'route': {
        // A close directive without a frame is control, not a frame.
        if (envelope.frame !== null) {
          metrics.framesReceivedBinaryToPhone++;
          metrics.bytesReceivedBinaryToPhone += data.length;
        }
        const phone = this.ctx.directory.phoneFor(this.serverId, envelope.connId);
        if (phone === undefined) {
          if (envelope.frame !== null) metrics.droppedBinaryToPhone.unknown_conn_id++;
          this.ctx.log.warn('binary_forwarder_unknown_conn_id', { server_id: this.serverId, conn_id: envelope.connId });
          return;
        }
        phone.deliver(envelope.frame, envelope.closeCode);
        return;
      }
    }
  }

  onPingFlood(): void {
    this.closeWith(PING_FLOOD_CODE, PING_FLOOD_REASON, 'ping_flood');
  }

  onSendTimeout(): void {
    // The binary stopped reading: it is treated as dead, like the reference's failed write.
    this.closeWith(WRITE_TIMEOUT_CODE, WRITE_TIMEOUT_REASON, 'write_failed');
  }

  /** Either side's close frame ends the binary's claim: its grace window starts now, not when
   * its TCP connection ends (up to the 5 s close-handshake wait later: a dead binary never
   * answers, some clients keep TCP open), as in the reference, whose handler arms the grace timer
   * before it closes the socket. A successor arriving meanwhile reclaims; no probe. */
  onClosing(): void {
    this.end();
  }

  onClose(code: number, closedByRelay: boolean): void {
    this.ctx.metrics.connectionClosed('server', this.closeReason ?? closeReasonFor(code, closedByRelay));
    this.end();
    this.onEnded(this);
  }

  /** Gives the server-id back (grace window) once, at the close frame or at the socket's end. */
  private end(): void {
    if (this.state === 'ended') return;
    const wasClaimed = this.state === 'claimed';
    this.state = 'ended';
    this.heartbeat.stop();
    if (wasClaimed && this.ctx.directory.release(this.serverId, this)) {
      this.ctx.log.info('server_released', { server_id: this.serverId });
    }
    // Paused phones resume; their next sends fail fast and they disconnect.
    this.resumePhones();
  }

  /** Relay-initiated close; `why` is what the close counts as. */
  closeWith(code: number, reason: string, why: CloseReason): void {
    if (!this.peer.isClosed) this.closeReason ??= why;
    this.peer.close(code, reason);
  }
}
