// /v1/client: one phone's connection from registration to teardown:
// - registration and its refusals (docs/protocol.md, "On a phone (`/v1/client`)");
// - wrapping its frames (docs/protocol.md, "Phone to binary");
// - the binary's close directives (docs/protocol.md, "Close directives (binary to relay)");
// - the close notice (docs/protocol.md, "Close notices (relay to binary)");
// - its outbox (docs/protocol.md, "Backpressure: slow phones and slow binaries").

import type WebSocket from 'ws';
import {
  CLOSE_TRY_AGAIN_LATER,
  CLUSTER_UNAVAILABLE_REASON,
  AT_CAP_CODE,
  AT_CAP_REASON,
  BACKLOG_FULL_REASON,
  CLOSE_ABNORMAL,
  CLOSE_GOING_AWAY,
  CLOSE_NORMAL,
  HEARTBEAT_TIMEOUT_CODE,
  HEARTBEAT_TIMEOUT_REASON,
  NO_SERVER_CODE,
  NO_SERVER_REASON,
  PING_FLOOD_CODE,
  PING_FLOOD_REASON,
} from '../protocol/close-codes.js';
import { phoneConnId } from '../protocol/conn-id.js';
import type { RelayContext } from './context.js';
import { closeNotice, connIdPrefix, PAYLOAD_AS_IS, phoneEnvelope } from '../protocol/envelope.js';
import { mayWriteAsView } from './retained.js';
import { HeldMessages } from './held-messages.js';
import { Heartbeat, type HeartbeatOwner } from './heartbeat.js';
import { closeReasonFor, type CloseReason } from '../metrics/metrics.js';
import { Outbox } from './outbox.js';
import { Peer, type PeerEvents } from './peer.js';
import type { BinaryLink, PhoneLink } from './links.js';
import type { RegisterDecision } from './registry.js';

export interface PhoneHandshake {
  serverId: string;
  deviceName: string;
  remote: string;
}

export class PhoneSession implements PhoneLink, PeerEvents, HeartbeatOwner {
  readonly peer: Peer;
  readonly connId: string;
  readonly serverId: string;
  /** Created on the first frame from the binary: an idle phone never pays for one. */
  private outbox: Outbox | undefined;
  private readonly heartbeat: Heartbeat;
  /** `{"conn_id":"…","frame":`, made on the phone's first frame (idle phones never need it). */
  private prefix: Buffer | undefined;
  private registered = false;
  private ended = false;
  /** The binary holding the slot when this phone registered (close-notice identity check). */
  private binaryAtRegistration: BinaryLink | undefined;
  /** The binary asked to close this phone: no close notice goes back to it. */
  private closedByBinary = false;
  /** Why the relay closed this phone (first decision wins); undefined if the peer closed first. */
  private closeReason: CloseReason | undefined;
  private forwardTarget: BinaryLink | undefined;
  /** The binary asked this phone to wait (it is backed up): nothing more is forwarded. */
  private heldBack = false;
  /** What ws delivered after the phone was held back, until it is let go. */
  private held: HeldMessages | undefined;
  /** Only the registration logs read it: dropped once registration is decided (an idle phone
   * does not keep it). */
  private handshake: PhoneHandshake | undefined;

  constructor(
    private readonly ctx: RelayContext,
    ws: WebSocket,
    handshake: PhoneHandshake,
    /** Gives back the connection-cap slot (called once the handler ended). */
    readonly releaseSlot: () => void,
    /** Shared by every session of the relay: the session is passed, no closure per connection. */
    private readonly onEnded: (session: PhoneSession) => void,
  ) {
    this.handshake = handshake;
    this.serverId = handshake.serverId;
    this.connId = phoneConnId(handshake.serverId);
    this.peer = new Peer(ws, this, ctx.timings.messageReadTimeoutMs);
    this.heartbeat = new Heartbeat(this.peer, ctx.timings.heartbeatIntervalMs, this);
  }

  heartbeatTimedOut(): void {
    this.closeWith(HEARTBEAT_TIMEOUT_CODE, HEARTBEAT_TIMEOUT_REASON, 'heartbeat_timeout');
  }

  /** Runs the registration; called once, right after the upgrade. */
  start(): void {
    const decision = this.ctx.directory.registerPhone(this.serverId, this);
    if (!(decision instanceof Promise)) {
      this.registeredAs(decision);
      return;
    }
    // A cluster engine answers later: hold the phone's frames until it did.
    this.peer.pause();
    void decision.then((answer) => {
      if (this.ended || this.peer.isClosed) {
        // Closed while the answer was on its way: undo an accepted registration.
        if (answer === 'ok') this.ctx.directory.unregisterPhone(this.serverId, this);
        return;
      }
      this.registeredAs(answer);
      this.peer.resume();
    });
  }

  private registeredAs(decision: RegisterDecision | 'unavailable'): void {
    const { directory, metrics, log } = this.ctx;
    const handshake = this.handshake!;
    this.handshake = undefined;
    const fields = { server_id: this.serverId, remote: handshake.remote };
    if (decision === 'no_server') {
      this.closeReason = 'no_server_4404';
      this.peer.close(NO_SERVER_CODE, NO_SERVER_REASON);
      metrics.clientNoServer();
      log.info('phone_register_no_server', fields);
      return;
    }
    if (decision === 'at_cap') {
      this.closeReason = 'at_cap_4429';
      this.peer.close(AT_CAP_CODE, AT_CAP_REASON);
      metrics.clientAtCap();
      log.info('phone_register_at_cap', fields);
      return;
    }
    if (decision === 'unavailable') {
      // Counted as other_code: the default scrape has no cluster reasons (cluster families count why).
      this.closeReason = 'other_code';
      this.peer.close(CLOSE_TRY_AGAIN_LATER, CLUSTER_UNAVAILABLE_REASON);
      return;
    }
    this.registered = true;
    this.binaryAtRegistration = directory.binaryFor(this.serverId);
    metrics.clientAccepted();
    log.info('phone_registered', {
      server_id: this.serverId,
      conn_id: this.connId,
      device_name: handshake.deviceName,
      remote: handshake.remote,
    });
    this.heartbeat.start();
  }

  // ---- Phone -> binary ----

  onMessage(data: Buffer, isBinary: boolean): void {
    const metrics = this.ctx.metrics;
    metrics.framesReceivedPhoneToBinary++;
    metrics.bytesReceivedPhoneToBinary += data.length;
    if (!this.registered || this.ended) {
      metrics.droppedPhoneToBinary.closing++;
      return;
    }
    // Held back, yet ws still delivers what was left in the read it was parsing: it waits.
    if (this.heldBack || this.held !== undefined) {
      if (this.held === undefined) this.held = new HeldMessages(data, isBinary);
      else this.held.push(data, isBinary);
      return;
    }
    this.route(data, isBinary);
  }

  private route(data: Buffer, isBinary: boolean): void {
    const metrics = this.ctx.metrics;
    this.prefix ??= connIdPrefix(this.connId);
    const envelope = phoneEnvelope(this.prefix, data, isBinary);
    if (envelope === null) {
      metrics.droppedPhoneToBinary.malformed_frame++;
      // Only the offending sender pays: one warn line, then this phone is dropped.
      this.ctx.log.warn('phone_forwarder_marshal_err', {
        server_id: this.serverId,
        conn_id: this.connId,
        err: 'frame is not a valid JSON value',
      });
      this.closeWith(CLOSE_NORMAL, '', 'malformed_frame');
      return;
    }
    const binary = this.ctx.directory.binaryFor(this.serverId);
    if (binary === undefined) {
      metrics.droppedPhoneToBinary.no_binary++;
      this.ctx.log.info('phone_forwarder_no_binary', { server_id: this.serverId, conn_id: this.connId });
      this.closeWith(CLOSE_NORMAL, '', 'no_binary');
      return;
    }
    this.forwardTarget = binary;
    if (envelope !== PAYLOAD_AS_IS) binary.forward(this, envelope);
    // Written around the phone's bytes as they arrived: a large frame as the view it is (src/session/
    // retained.ts says when a view may be held until its write completes), any other copied
    // straight into the one buffer of its WebSocket frame.
    else binary.forwardJoined(this, this.prefix, data, !mayWriteAsView(data));
  }

  /** Completion of one envelope send to the binary; `bytes` is the envelope's length. Made on the
   * phone's first frame (an idle phone never needs it), then the same function for every frame. */
  get onForwarded(): (err: Error | undefined, bytes: number) => void {
    this.forwarded ??= (err, bytes) => this.forwardResult(err, bytes);
    return this.forwarded;
  }

  private forwarded: ((err: Error | undefined, bytes: number) => void) | undefined;

  private forwardResult(err: Error | undefined, bytes: number): void {
    const metrics = this.ctx.metrics;
    if (err === undefined) {
      metrics.framesPhoneToBinary++;
      metrics.bytesForwardedPhoneToBinary += bytes;
      this.forwardTarget?.drained();
      return;
    }
    metrics.droppedPhoneToBinary.write_failed++;
    if (this.ended) return;
    this.ctx.log.info('phone_forwarder_send_failed', {
      server_id: this.serverId,
      conn_id: this.connId,
      err: err.message,
    });
    this.closeWith(CLOSE_NORMAL, '', 'forward_failed');
  }

  pauseReading(): void {
    this.heldBack = true;
    this.peer.pause();
  }

  resumeReading(): void {
    this.heldBack = false;
    const held = this.held;
    if (held !== undefined) {
      // What waited goes first, in order, until the binary backs up again (or the phone ends).
      const route = (data: Buffer, isBinary: boolean): void => this.route(data, isBinary);
      while (held.size > 0 && !this.heldBack && !this.ended) held.shift(route);
      if (held.size > 0 && !this.ended) return;
      this.dropHeld();
    }
    if (!this.heldBack) this.peer.resume();
  }

  /** Held messages that will never go out (the phone ended) are counted as dropped. */
  private dropHeld(): void {
    if (this.held === undefined) return;
    this.ctx.metrics.droppedPhoneToBinary.closing += this.held.size;
    this.held = undefined;
  }

  // ---- Binary -> phone ----

  /** Routes one frame or close directive from the binary into this phone's outbox (drops are
   * counted by the outbox). */
  deliver(frame: Buffer | null, closeCode: number): void {
    // Marked at enqueue time, even if the directive then overflows the budget.
    if (closeCode !== 0) this.closedByBinary = true;
    const result = this.outboxFor().enqueue(frame, closeCode);
    if (result !== 'ok') {
      this.ctx.log.info('binary_forwarder_phone_enqueue_failed', {
        server_id: this.serverId,
        conn_id: this.connId,
        err: result === 'backlog_full' ? BACKLOG_FULL_REASON : 'outbox closed',
      });
    }
  }

  onPingFlood(): void {
    this.closeWith(PING_FLOOD_CODE, PING_FLOOD_REASON, 'ping_flood');
  }

  onSendTimeout(): void {
    this.outbox?.sendTimedOut();
  }

  /** This phone's outbox, made on first use. */
  private outboxFor(): Outbox {
    if (this.outbox !== undefined) return this.outbox;
    const { metrics, log } = this.ctx;
    this.outbox = new Outbox(this.peer, {
      onFrameWritten: (bytes) => {
        metrics.framesBinaryToPhone++;
        metrics.bytesForwardedBinaryToPhone += bytes;
      },
      onFramesDropped: (count, reason) => {
        metrics.droppedBinaryToPhone[reason] += count;
      },
      onFailure: (code, reason, why) => this.closeWith(code, reason, why),
      onDirective: (code) => {
        this.closeWith(code, '', 'directive');
        log.info('binary_forwarder_phone_closed', {
          server_id: this.serverId,
          conn_id: this.connId,
          close_code: this.peer.relayCloseCode,
        });
      },
      onDirectiveFrameFailed: (code, err) =>
        log.info('binary_forwarder_close_frame_send_failed', {
          server_id: this.serverId,
          conn_id: this.connId,
          close_code: code,
          err: err.message,
        }),
    });
    // Made after teardown (a frame raced the unregister): it is as stopped as it would have been.
    if (this.ended) this.outbox.stop(this.closeReason === 'shutdown' ? 'shutdown' : 'phone_gone');
    return this.outbox;
  }

  // ---- Teardown ----

  /** The relay closes this phone (eviction, expiry, shutdown, heartbeat, outbox, directive, or
   * the end of its read pump). Exactly one close frame goes out; teardown runs once. */
  closeWith(code: number, reason: string, why: CloseReason): void {
    if (!this.peer.isClosed) this.closeReason ??= why;
    this.peer.close(code, reason);
    // A peer whose close frame already arrived keeps its own code (its close is not the relay's).
    this.teardown(this.peer.closeCode || code);
  }

  /** The phone's close frame arrived, or the relay's (or ws's, for a protocol violation) went
   * out: the binary learns now, not when the phone's TCP connection ends up to 5 s later. */
  onClosing(): void {
    this.teardown(this.peer.closeCode);
  }

  onClose(code: number, closedByRelay: boolean): void {
    this.teardown(closedByRelay || code !== CLOSE_ABNORMAL ? code : CLOSE_GOING_AWAY);
    this.ctx.metrics.connectionClosed('client', this.closeReason ?? closeReasonFor(code, closedByRelay));
    this.onEnded(this);
  }

  private teardown(noticeCode: number): void {
    if (this.ended) return;
    this.ended = true;
    this.heartbeat.stop();
    if (!this.registered) return;
    const { directory, log } = this.ctx;
    // (a) Tell the binary, unless it asked for this close or the slot changed hands since.
    const binary = this.binaryAtRegistration;
    if (!this.closedByBinary && binary !== undefined && directory.binaryFor(this.serverId) === binary) {
      binary.notify(closeNotice(this.connId, noticeCode), (err) => {
        if (err !== undefined) {
          log.info('phone_close_notice_send_failed', {
            server_id: this.serverId,
            conn_id: this.connId,
            close_code: noticeCode,
            err: err.message,
          });
        }
      });
    }
    // (b) unregister, (c) close the socket, (d) stop the outbox, (e) log.
    this.dropHeld();
    directory.unregisterPhone(this.serverId, this);
    this.peer.close(CLOSE_NORMAL);
    this.outbox?.stop(this.closeReason === 'shutdown' ? 'shutdown' : 'phone_gone');
    log.info('phone_unregistered', { server_id: this.serverId, conn_id: this.connId });
  }
}
