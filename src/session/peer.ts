// One WebSocket peer (a binary or a phone) with the socket rules of docs/protocol.md, "WebSocket rules" and
// docs/protocol.md, "Timings and the flags that change them":
// text-frame sends with a per-send deadline, exactly one close frame (guarded against codes `ws`
// refuses), a per-message read deadline, and the ping/pong primitive behind the heartbeat and the
// conflict probe.
//
// An idle connection holds no closure of its own here (idle memory in
// docs/performance.md, "Where the targets stand"): the socket listeners are shared functions that
// find their Peer through the RelaySocket they fire on, timers carry the Peer as their argument,
// and the send bookkeeping and its callbacks are made on the first send.

import type { Socket } from 'node:net';
import WebSocket from 'ws';
import {
  CLOSE_INTERNAL_ERROR,
  isSendableCloseCode,
  READ_TIMEOUT_CODE,
  READ_TIMEOUT_REASON,
} from '../protocol/close-codes.js';
import { sendsDirectly, writeTextFrame } from './text-frame.js';

/** Every outbound send must complete within this long (docs/operations.md, "Timeouts and limits"). */
export const SEND_TIMEOUT_MS = 10_000;
/** Once a message's first frame header arrived, the whole message must arrive within this long. */
export const MESSAGE_READ_TIMEOUT_MS = 30_000;
/** How long we wait for the peer's reciprocal close frame before dropping TCP. */
export const CLOSE_HANDSHAKE_TIMEOUT_MS = 5_000;
/** Pongs the relay owes a peer (answers not yet handed to the kernel) before it stops answering
 * and closes the peer: a peer cannot have more pings than this in flight. A client that reads
 * never gets near it; a peer that pings without reading would otherwise grow our write buffer. */
export const MAX_PENDING_PONGS = 60;
/** Close reasons are limited to 123 bytes by RFC 6455. */
const MAX_CLOSE_REASON_BYTES = 123;
/** An unfinished message is held in at most about this many pieces (socket reads, fragments):
 * ws keeps each as its own Buffer (~150-300 B of overhead, plus its read's memory), so a message
 * dribbled a byte per TCP segment was 262,144 of them. Above this, the newest pieces are merged. */
export const MAX_UNFINISHED_PIECES = 64;

const SEND_OPTIONS = { binary: false } as const;

export type SendCallback = (err: Error | undefined, tag: number) => void;

/** Error given to send callbacks when the peer is already closed. */
export const PEER_CLOSED = new Error('connection closed');
/** Error given to send callbacks when a send exceeded SEND_TIMEOUT_MS. */
export const SEND_TIMED_OUT = new Error('send timed out');

export interface PeerEvents {
  /** A message arrived (text or binary opcode). */
  onMessage(data: Buffer, isBinary: boolean): void;
  /** The socket is gone. `code` is what the relay sent if the relay closed first, else the peer's
   * close status (1005 for a close frame without one), else 1006 (no close frame). */
  onClose(code: number, closedByRelay: boolean): void;
  /** A send did not complete within SEND_TIMEOUT_MS; the caller decides how to close. */
  onSendTimeout(): void;
  /** The peer has more than MAX_PENDING_PONGS pings unanswered; the caller closes it (1008). */
  onPingFlood(): void;
  /** The connection started closing, once: the relay sent its close frame (or ws did, for a
   * protocol violation) or the peer's close frame arrived first (closeCode then holds the
   * peer's status, 1005 without one). onClose follows when the socket is gone, up to
   * CLOSE_HANDSHAKE_TIMEOUT_MS later (a dead peer never answers). */
  onClosing?(): void;
}

/** The close code ws attached to a protocol-violation error (its `status-code` symbol). */
function wsStatusCode(err: Error): number | undefined {
  for (const symbol of Object.getOwnPropertySymbols(err)) {
    if (symbol.description === 'status-code') {
      const code = (err as unknown as Record<symbol, unknown>)[symbol];
      return typeof code === 'number' ? code : undefined;
    }
  }
  return undefined;
}

interface WsReceiverState {
  _state: number;
  _bufferedBytes: number;
  _fragmented: number;
  /** Socket reads not consumed yet (an unfinished frame's payload, read by read). */
  _buffers: Buffer[];
  /** The payloads of an unfinished message's fragments so far. */
  _fragments: Buffer[];
  /** ws's receiver emits 'conclude' with the status of the peer's close frame (1005 without one). */
  on(event: 'conclude', listener: (code: number) => void): unknown;
}

/** Merges the newest half of `pieces` into one Buffer, then each merged run into the one before it
 * while it is at least as big, so runs shrink from oldest to newest (like a binary counter): a
 * byte dribbled into a 256 KiB message is copied about log2(256 Ki / 32) times, not once per
 * merge, and the list stays short. Same bytes in the same order: ws reads on as before. */
function mergePieces(pieces: Buffer[]): void {
  pieces.push(Buffer.concat(pieces.splice(pieces.length >>> 1)));
  while (pieces.length >= 2 && pieces.at(-1)!.length >= pieces.at(-2)!.length) {
    const newer = pieces.pop()!;
    const older = pieces.pop()!;
    pieces.push(Buffer.concat([older, newer]));
  }
}

/** What ws makes each accepted connection (the relay's WebSocketServer passes this class as its
 * `WebSocket` option): a WebSocket that knows its Peer and hands it ws's events itself. ws
 * announces everything through `emit`; the events a Peer handles go straight to it, so no
 * listener is registered per connection and no message passes through EventEmitter's dispatch.
 * Listeners someone else adds still get every event, after the Peer. */
export class RelaySocket extends WebSocket {
  peer: Peer | undefined = undefined;

  // ws emits at most two arguments ('message': data, isBinary; 'close': code, reason).
  override emit(event: string | symbol, a?: unknown, b?: unknown): boolean {
    const peer = this.peer;
    if (peer !== undefined) Peer.handleWsEvent(peer, event, a, b);
    // An 'error' nobody listens to must not throw: the Peer handled it.
    return this.listenerCount(event) > 0 ? super.emit(event, a, b) : peer !== undefined;
  }
}

/** ws's private symbol by which its socket and receiver point back at their WebSocket, found once
 * on the first connection. */
let wsBackLink: symbol | undefined;

function findWsBackLink(holder: object, ws: WebSocket): symbol {
  for (const symbol of Object.getOwnPropertySymbols(holder)) {
    if ((holder as Record<symbol, unknown>)[symbol] === ws) return symbol;
  }
  throw new Error('ws internals changed: the socket does not point back at its WebSocket');
}

/** The Peer behind a socket or receiver (undefined once ws detached it on close). */
function peerOf(holder: object): Peer | undefined {
  return ((holder as Record<symbol, unknown>)[wsBackLink!] as RelaySocket | undefined)?.peer;
}

/** Outstanding sends of one peer, oldest first: callbacks complete in send order (one socket,
 * FIFO writes). Made on the peer's first send: an idle connection never needs one. */
class PendingSends {
  callbacks: (SendCallback | undefined)[] = [];
  tags: number[] = [];
  starts: number[] = [];
  head = 0;

  get count(): number {
    return this.callbacks.length - this.head;
  }

  push(done: SendCallback | undefined, tag: number, start: number): void {
    this.callbacks.push(done);
    this.tags.push(tag);
    this.starts.push(start);
  }

  /** ws's write callback for this peer's frames: completes the oldest send. */
  readonly onWritten = (err?: Error): void => {
    const head = this.head;
    if (head >= this.callbacks.length) return;
    const done = this.callbacks[head];
    const tag = this.tags[head]!;
    this.callbacks[head] = undefined;
    this.head = head + 1;
    if (this.head === this.callbacks.length) {
      this.callbacks.length = 0;
      this.tags.length = 0;
      this.starts.length = 0;
      this.head = 0;
    } else if (this.head >= 1024) {
      this.callbacks.splice(0, this.head);
      this.tags.splice(0, this.head);
      this.starts.splice(0, this.head);
      this.head = 0;
    }
    if (done !== undefined) done(err ?? undefined, tag);
  };

  /** Completes every pending send with `err`, oldest first; later socket callbacks for them
   * find the queue empty and are ignored. */
  failAll(err: Error): void {
    const callbacks = this.callbacks;
    const tags = this.tags;
    const head = this.head;
    const count = callbacks.length;
    if (head >= count) return;
    this.callbacks = [];
    this.tags = [];
    this.starts = [];
    this.head = 0;
    for (let i = head; i < count; i++) {
      const done = callbacks[i];
      if (done !== undefined) done(err, tags[i]!);
    }
  }

  /** When the oldest pending send started (performance.now() clock). */
  get oldestStart(): number {
    return this.starts[this.head]!;
  }
}

export class Peer {
  /** Code of the close frame the relay sent, or 0 while the relay has not closed. */
  relayCloseCode = 0;
  /** Status of the peer's close frame when the peer closed first (1005 without one), else 0. */
  private peerCloseCode = 0;
  private closed = false;
  private readonly socket: Socket;
  private readonly receiver: WsReceiverState | undefined;

  /** Made on the first send (idle connections never send). */
  private sends: PendingSends | undefined;
  private sendTimer: ReturnType<typeof setTimeout> | undefined;

  /** The read deadline's timer: armed while a message is unfinished, left to lapse (not cleared)
   * when messages complete, so a busy stream costs no timer work per chunk. */
  private messageTimer: ReturnType<typeof setTimeout> | undefined;
  /** Messages ws has delivered from this peer: tells one unfinished message from the next. */
  private messagesRead = 0;
  /** `messagesRead` when the unfinished message was first seen at the end of a chunk; -1 while
   * the relay is between messages (or not reading). */
  private unfinishedMark = -1;
  /** When that message was first seen unfinished (performance.now()): its first bytes came in
   * that chunk, so its deadline runs from there. */
  private unfinishedSince = 0;
  private paused = false;
  private corked = false;
  /** Uncorks the socket at the end of the tick; made on the first send (a closure, not an
   * argument to nextTick: that would allocate an array on every corked tick). */
  private uncorker: (() => void) | undefined;

  /** Made on the first probe (most connections are never probed). */
  private pongWaiters: ((alive: boolean) => void)[] | undefined;
  /** Pongs written to ws whose write has not completed. */
  private pendingPongs = 0;
  /** ws's write callback for pongs, made on the first ping the peer sends. */
  private onPongWritten: (() => void) | undefined;
  private lastPongAt = 0;

  constructor(
    readonly ws: WebSocket,
    private readonly events: PeerEvents,
    private readonly messageReadTimeoutMs: number = MESSAGE_READ_TIMEOUT_MS,
  ) {
    // ws keeps these private; the relay pins the ws major version and a test covers the read
    // deadline, so a rename would fail loudly rather than silently disable the deadline.
    const internals = ws as unknown as { _socket: Socket; _receiver: WsReceiverState };
    this.socket = internals._socket;
    this.receiver = internals._receiver;

    // The relay's WebSocketServer makes RelaySockets; anything else would leave the shared
    // listeners without their Peer, so it fails here rather than on the first event.
    if (!(ws instanceof RelaySocket))
      throw new Error('Peer needs a RelaySocket (the WebSocketServer `WebSocket` option)');
    ws.peer = this;
    wsBackLink ??= findWsBackLink(this.socket, ws);

    // ws's 'message', 'pong', 'ping', 'error' and 'close' reach handleWsEvent through
    // RelaySocket.emit. The peer's close frame: ws answers it and then waits up to CLOSE_HANDSHAKE_TIMEOUT_MS for
    // TCP to end, which a peer may hold open (coder/websocket does). From here the connection is
    // the peer's close: nothing of the relay's (a heartbeat tick, a failed send) may relabel it.
    this.receiver?.on('conclude', Peer.onReceiverConclude);
    // Registered after ws's own 'data' listener, so the receiver has already consumed the chunk.
    this.socket.on('data', Peer.onSocketData);
  }

  // ---- ws's events (RelaySocket.emit) and the listeners shared by every connection ----

  /** One event ws announced on this peer's WebSocket. */
  static handleWsEvent(peer: Peer, event: string | symbol, a: unknown, b: unknown): void {
    switch (event) {
      case 'message':
        peer.messagesRead++;
        peer.events.onMessage(a as Buffer, b as boolean);
        return;
      case 'pong':
        peer.handlePong();
        return;
      case 'ping':
        // The relay answers pings itself (the server runs with autoPong off): ws's own limit drops
        // TCP without a close frame, which would look like the peer's abrupt end.
        peer.handlePing(a as Buffer);
        return;
      case 'error': {
        // ws emits 'error' for socket errors and for protocol violations, after it sent the close
        // frame itself (1002, 1007 or 1009): record that code as the relay's, since the relay's
        // library sent it. 'close' always follows, which is where teardown happens.
        const code = wsStatusCode(a as Error);
        if (code !== undefined && peer.relayCloseCode === 0 && !peer.closed) {
          peer.closed = true;
          peer.relayCloseCode = code;
          peer.stopTimers();
          peer.events.onClosing?.();
        }
        return;
      }
      case 'close':
        // Exactly once per connection.
        peer.handleClose(a as number);
        return;
    }
  }

  private static readonly onReceiverConclude = function (this: object, code: number): void {
    peerOf(this)?.handleCloseFrame(code);
  };

  private static readonly onSocketData = function (this: Socket): void {
    peerOf(this)?.checkMessageDeadline();
  };

  /** True once either side closed: the relay sent its close frame, the peer's close frame
   * arrived, or the socket is gone. */
  get isClosed(): boolean {
    return this.closed;
  }

  /** True while the connection is anything but open (closed by either side, or the socket
   * ended): such a peer is not due for a heartbeat, its 'close' follows on its own. */
  get isClosing(): boolean {
    return this.closed || this.ws.readyState !== WebSocket.OPEN;
  }

  /** The code this connection ends with as far as it is decided: the relay's close frame, else the
   * peer's, else 0. */
  get closeCode(): number {
    return this.relayCloseCode || this.peerCloseCode;
  }

  /** True while the relay is not reading this peer (back-pressure). */
  get isPaused(): boolean {
    return this.paused;
  }

  /** Bytes queued in ws and the socket but not yet handed to the kernel. */
  get bufferedAmount(): number {
    return this.ws.bufferedAmount;
  }

  /** Number of sends whose completion callback has not run yet. */
  get pendingSends(): number {
    return this.sends === undefined ? 0 : this.sends.count;
  }

  /** Sends one text frame. `done(err, tag)` runs once the socket accepted the bytes or the send
   * failed; callbacks run in send order. */
  send(data: Buffer, done: SendCallback | undefined, tag = 0): void {
    const sends = this.beginSend(done, tag);
    if (sends !== undefined) this.ws.send(data, SEND_OPTIONS, sends.onWritten);
  }

  /** Sends one text frame carrying head + body + tail, like send(Buffer.concat(...)) but without
   * the copy (src/session/text-frame.ts): the three stay referenced until `done` runs. With
   * `copyBody` they are copied into the frame at once instead (nothing stays referenced), still
   * one allocation and one write fewer than joining them and sending through ws. */
  sendJoined(
    head: Buffer,
    body: Buffer,
    tail: Buffer,
    done: SendCallback | undefined,
    tag = 0,
    copyBody = false,
  ): void {
    const sends = this.beginSend(done, tag);
    if (sends === undefined) return;
    if (sendsDirectly(this.ws)) writeTextFrame(this.socket, head, body, tail, sends.onWritten, copyBody);
    else this.ws.send(Buffer.concat([head, body, tail]), SEND_OPTIONS, sends.onWritten);
  }

  /** The bookkeeping of one send: the pending sends whose callback the write gets, or undefined
   * (and `done` failed) when the peer is closed. */
  private beginSend(done: SendCallback | undefined, tag: number): PendingSends | undefined {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) {
      if (done !== undefined) process.nextTick(done, PEER_CLOSED, tag);
      return undefined;
    }
    this.sends ??= new PendingSends();
    const sends = this.sends;
    const now = performance.now();
    if (sends.count === 0 && this.sendTimer === undefined) {
      this.sendTimer = setTimeout(Peer.checkSendDeadline, SEND_TIMEOUT_MS, this);
    }
    sends.push(done, tag, now);
    // Frames sent in the same tick leave in one writev instead of one syscall each; the socket
    // is uncorked before any I/O runs again, so batching adds no latency.
    if (!this.corked) {
      this.corked = true;
      this.socket.cork();
      this.uncorker ??= () => {
        this.corked = false;
        this.socket.uncork();
      };
      process.nextTick(this.uncorker);
    }
    return sends;
  }

  private static checkSendDeadline(peer: Peer): void {
    peer.sendTimer = undefined;
    const sends = peer.sends;
    if (peer.closed || sends === undefined || sends.count === 0) return;
    const age = performance.now() - sends.oldestStart;
    if (age >= SEND_TIMEOUT_MS) {
      // Nothing still pending was written: report every one as failed now (Node would call
      // their callbacks without an error once the socket is destroyed), then let the owner close.
      sends.failAll(SEND_TIMED_OUT);
      peer.events.onSendTimeout();
      return;
    }
    peer.sendTimer = setTimeout(Peer.checkSendDeadline, SEND_TIMEOUT_MS - age, peer);
  }

  /** Sends the one close frame of this connection (later calls are no-ops). A code `ws` refuses
   * becomes 1011 with an empty reason, as the reference's library does. */
  close(code: number, reason = ''): void {
    if (this.closed) return;
    this.closed = true;
    if (!isSendableCloseCode(code)) {
      code = CLOSE_INTERNAL_ERROR;
      reason = '';
    }
    this.relayCloseCode = code;
    this.stopTimers();
    // A paused socket would never read the peer's reciprocal close frame.
    if (this.paused) {
      this.paused = false;
      this.ws.resume();
    }
    if (Buffer.byteLength(reason) > MAX_CLOSE_REASON_BYTES) reason = '';
    const state = this.ws.readyState;
    if (state === WebSocket.OPEN) {
      this.ws.close(code, reason);
    } else if (state !== WebSocket.CLOSED) {
      this.ws.terminate();
    }
    this.events.onClosing?.();
  }

  /** Drops the TCP connection without a close handshake. */
  terminate(): void {
    this.closed = true;
    this.stopTimers();
    this.ws.terminate();
  }

  /** Stops delivering messages (back-pressure towards this peer). */
  pause(): void {
    if (this.paused || this.closed) return;
    this.paused = true;
    this.ws.pause();
    // Bytes we are not reading cannot count against the peer's message deadline: on resume an
    // unfinished message gets a whole deadline again.
    this.clearMessageTimer();
    this.unfinishedMark = -1;
  }

  resume(): void {
    if (!this.paused) return;
    this.paused = false;
    if (this.closed) return;
    this.ws.resume();
    this.checkMessageDeadline();
  }

  /** Sends a ping; false if it could not be sent (socket closed). */
  ping(): boolean {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return false;
    try {
      this.ws.ping();
      return true;
    } catch {
      return false;
    }
  }

  /** Time of the last pong (performance.now() clock), 0 if none yet. */
  get lastPong(): number {
    return this.lastPongAt;
  }

  /** Liveness probe: ping and wait up to `timeoutMs` for a pong. Resolves false if the peer could
   * not be pinged, did not answer in time, or closed meanwhile. */
  probe(timeoutMs: number): Promise<boolean> {
    if (!this.ping()) return Promise.resolve(false);
    return new Promise((resolve) => {
      const timer = setTimeout(() => finish(false), timeoutMs);
      const finish = (alive: boolean): void => {
        clearTimeout(timer);
        const waiters = this.pongWaiters;
        const index = waiters === undefined ? -1 : waiters.indexOf(finish);
        if (index >= 0) waiters!.splice(index, 1);
        resolve(alive);
      };
      this.pongWaiters ??= [];
      this.pongWaiters.push(finish);
    });
  }

  private handlePing(data: Buffer): void {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return;
    if (this.pendingPongs >= MAX_PENDING_PONGS) {
      this.events.onPingFlood();
      return;
    }
    this.pendingPongs++;
    // The payload (<= 125 bytes) is a view of the socket chunk it arrived in: a pong waiting for
    // the socket must not keep that chunk alive, so it gets an unpooled copy of its own.
    let payload = data;
    if (data.length > 0) {
      payload = Buffer.allocUnsafeSlow(data.length);
      data.copy(payload);
    }
    this.onPongWritten ??= () => {
      this.pendingPongs--;
    };
    this.ws.pong(payload, false, this.onPongWritten);
  }

  private handlePong(): void {
    this.lastPongAt = performance.now();
    const waiters = this.pongWaiters;
    if (waiters === undefined || waiters.length === 0) return;
    this.pongWaiters = undefined;
    for (const waiter of waiters) waiter(true);
  }

  private handleCloseFrame(code: number): void {
    if (this.closed) return; // the relay closed first: this is the peer's reply
    this.closed = true;
    this.peerCloseCode = code;
    this.stopTimers();
    this.events.onClosing?.();
  }

  private handleClose(peerCode: number): void {
    const closedByRelay = this.relayCloseCode !== 0;
    this.closed = true;
    this.stopTimers();
    // Writes still pending when the socket is gone were not delivered; a destroyed socket's
    // callbacks arrive without an error, so fail them here and ignore those callbacks.
    this.sends?.failAll(PEER_CLOSED);
    const waiters = this.pongWaiters;
    this.pongWaiters = undefined;
    if (waiters !== undefined) for (const waiter of waiters) waiter(false);
    this.events.onClose(closedByRelay ? this.relayCloseCode : peerCode, closedByRelay);
  }

  /** Runs after ws consumed each chunk. A message must complete within messageReadTimeoutMs of
   * its first bytes: the deadline belongs to the message, so a peer that streams without a read
   * ever ending between two messages is never cut while each message completes in time. */
  private checkMessageDeadline(): void {
    const receiver = this.receiver;
    if (receiver === undefined) return;
    // Also while closing: ws reads on until the peer's close frame, for up to 5 s.
    if (receiver._buffers.length > MAX_UNFINISHED_PIECES) mergePieces(receiver._buffers);
    if (receiver._fragments.length > MAX_UNFINISHED_PIECES) mergePieces(receiver._fragments);
    if (this.closed || this.paused) return;
    if (!Peer.midMessage(receiver)) {
      this.unfinishedMark = -1; // an armed timer finds nothing unfinished and lapses
      return;
    }
    if (this.unfinishedMark !== this.messagesRead) {
      // Not the message seen unfinished last time (if any): this one started in this chunk.
      this.unfinishedMark = this.messagesRead;
      this.unfinishedSince = performance.now();
    }
    if (this.messageTimer === undefined) this.armMessageTimer(performance.now());
  }

  private static midMessage(receiver: WsReceiverState): boolean {
    return receiver._state !== 0 || receiver._bufferedBytes > 0 || receiver._fragmented !== 0;
  }

  private armMessageTimer(now: number): void {
    const left = this.unfinishedSince + this.messageReadTimeoutMs - now;
    this.messageTimer = setTimeout(Peer.onMessageDeadline, Math.max(1, left), this);
  }

  private static onMessageDeadline(peer: Peer): void {
    peer.messageTimer = undefined;
    const receiver = peer.receiver;
    if (peer.closed || peer.paused || receiver === undefined || !Peer.midMessage(receiver)) return;
    const now = performance.now();
    if (peer.unfinishedMark !== peer.messagesRead) {
      // A message completed since the last chunk looked (ws delivered it without a new chunk):
      // the unfinished one is younger than its mark; give it a whole deadline from now.
      peer.unfinishedMark = peer.messagesRead;
      peer.unfinishedSince = now;
    }
    if (now - peer.unfinishedSince < peer.messageReadTimeoutMs) {
      peer.armMessageTimer(now); // a later message than the one the timer was armed for
      return;
    }
    peer.close(READ_TIMEOUT_CODE, READ_TIMEOUT_REASON);
    // The peer is stuck inside a frame and cannot send a parseable close back: flush our close
    // frame and drop TCP now instead of waiting out the close handshake.
    peer.socket.destroySoon();
  }

  private clearMessageTimer(): void {
    if (this.messageTimer !== undefined) {
      clearTimeout(this.messageTimer);
      this.messageTimer = undefined;
    }
  }

  private stopTimers(): void {
    this.clearMessageTimer();
    if (this.sendTimer !== undefined) {
      clearTimeout(this.sendTimer);
      this.sendTimer = undefined;
    }
  }
}
