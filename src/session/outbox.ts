// Per-phone outbox (docs/protocol.md, "Backpressure: slow phones and slow binaries"): the binary's read loop only
// enqueues, so a stalled phone can never delay its siblings or the binary's pongs. A byte budget bounds what one
// phone can pin; an item stays charged until its write completes. A short window of writes is handed to the socket at
// once (instead of one at a time) so small frames batch into fewer syscalls; the per-send deadline still measures
// each write from the moment it reached the socket.

import type { BinaryFrameDrop } from '../metrics/metrics.js';
import { BACKLOG_FULL_REASON, OUTBOX_FAILURE_CODE, WRITE_FAILED_REASON } from '../protocol/close-codes.js';
import type { Peer } from './peer.js';
import { mayWriteAsView, ownedFrame, retainedBytes } from './retained.js';

/** Bytes one phone may have queued or in flight: what its items keep alive (src/session/retained.ts),
 * not just their lengths. */
export const OUTBOX_BUDGET_BYTES = 4 << 20;
/** Charged per item on top of its length; bounds the item count at 65,536. */
export const OUTBOX_ITEM_OVERHEAD_BYTES = 64;
/** Stop handing writes to the socket while this much is buffered and not yet in the kernel... */
export const OUTBOX_SOCKET_WINDOW_BYTES = 64 * 1024;
/** ...or while this many writes have not completed: each keeps alive the 8 KiB allocation-pool
 * slab its WebSocket frame header was cut from (ws allocates headers from Node's pool). */
export const OUTBOX_SOCKET_WINDOW_FRAMES = 256;

/** A send's tag carries both the item's charge and its frame's length (for the byte counters):
 * charge * TAG_LENGTH_SPAN + length. Frames are at most 256 KiB, below 2^20; the product stays far
 * below 2^53. */
const TAG_LENGTH_SPAN = 2 ** 20;

function sendTag(frame: Buffer | null, charge: number): number {
  return charge * TAG_LENGTH_SPAN + (frame === null ? 0 : frame.length);
}

export type EnqueueResult = 'ok' | 'backlog_full' | 'closed';

export interface OutboxHooks {
  /** A frame (data or a directive's frame) of `bytes` bytes was written to the phone socket. */
  onFrameWritten(bytes: number): void;
  /** `count` frames were given up for `reason` (never written). */
  onFramesDropped(count: number, reason: BinaryFrameDrop): void;
  /** The outbox gave up: close the phone with this code and reason, once. */
  onFailure(code: number, reason: string, why: 'backlog_full' | 'write_failed'): void;
  /** A close directive reached the head of the queue: its frame (if any) is on its way; close
   * the phone with `code` now. `frameError` arrives later through onDirectiveFrameFailed. */
  onDirective(code: number): void;
  /** Writing a directive's frame failed (the phone was closed with the directive's code anyway). */
  onDirectiveFrameFailed(code: number, err: Error): void;
}

export class Outbox {
  private readonly frames: (Buffer | null)[] = [];
  private readonly codes: number[] = [];
  private head = 0;
  private chargedBytes = 0;
  private stopped = false;
  /** Why the outbox stopped; frames still in flight that fail count under it. */
  private stopReason: BinaryFrameDrop | undefined;
  /** Code of a directive that was queued or sent, 0 if none. */
  private directiveCode = 0;

  constructor(
    private readonly peer: Peer,
    private readonly hooks: OutboxHooks,
    private readonly budgetBytes: number = OUTBOX_BUDGET_BYTES,
  ) {}

  /** Bytes currently charged (queued plus in flight). */
  get charged(): number {
    return this.chargedBytes;
  }

  /** Queues a frame and/or a close directive (closeCode != 0). Never blocks. */
  enqueue(frame: Buffer | null, closeCode: number): EnqueueResult {
    if (this.stopped) {
      if (frame !== null) this.hooks.onFramesDropped(1, this.stopReason === 'shutdown' ? 'shutdown' : 'phone_gone');
      return 'closed';
    }
    // A small frame cut from a big envelope is copied out, so the item keeps alive what it is
    // charged for. A large one that goes to the socket right now (nothing queued before it, room
    // in the window) stays the view it is: the window bounds what such frames pin, and each is
    // charged its whole backing store until its write completes.
    if (frame !== null && !(this.head === this.frames.length && this.socketHasRoom() && mayWriteAsView(frame))) {
      frame = ownedFrame(frame);
    }
    const charge = retainedBytes(frame) + OUTBOX_ITEM_OVERHEAD_BYTES;
    if (this.chargedBytes + charge > this.budgetBytes) {
      if (frame !== null) this.hooks.onFramesDropped(1, 'backlog_full');
      this.fail(closeCode !== 0 ? closeCode : this.directiveCode, BACKLOG_FULL_REASON, 'backlog_full');
      return 'backlog_full';
    }
    if (closeCode !== 0) this.directiveCode = closeCode;
    this.chargedBytes += charge;
    this.frames.push(frame);
    this.codes.push(closeCode);
    this.pump();
    return 'ok';
  }

  /** Drops everything pending (counted under `reason`); in-flight writes finish or fail on their
   * own. Idempotent: the first reason wins. */
  stop(reason: BinaryFrameDrop): void {
    if (this.stopped) return;
    this.stopped = true;
    this.stopReason = reason;
    let dropped = 0;
    for (let i = this.head; i < this.frames.length; i++) {
      const frame = this.frames[i];
      if (frame !== null && frame !== undefined) dropped++;
      this.chargedBytes -= retainedBytes(frame ?? null) + OUTBOX_ITEM_OVERHEAD_BYTES;
    }
    if (dropped > 0) this.hooks.onFramesDropped(dropped, reason);
    this.frames.length = 0;
    this.codes.length = 0;
    this.head = 0;
  }

  /** The phone's socket missed the send deadline. */
  sendTimedOut(): void {
    this.fail(this.directiveCode, WRITE_FAILED_REASON, 'write_failed');
  }

  private fail(directiveCode: number, reason: string, why: 'backlog_full' | 'write_failed'): void {
    if (this.stopped) return;
    this.stop(why);
    if (directiveCode !== 0) this.hooks.onFailure(directiveCode, '', why);
    else this.hooks.onFailure(OUTBOX_FAILURE_CODE, reason, why);
  }

  /** True while the socket window takes another write. */
  private socketHasRoom(): boolean {
    const peer = this.peer;
    return peer.bufferedAmount < OUTBOX_SOCKET_WINDOW_BYTES && peer.pendingSends < OUTBOX_SOCKET_WINDOW_FRAMES;
  }

  private pump(): void {
    const peer = this.peer;
    while (!this.stopped && this.head < this.frames.length && this.socketHasRoom()) {
      const index = this.head++;
      const frame = this.frames[index]!;
      const code = this.codes[index]!;
      this.frames[index] = null;
      if (this.head === this.frames.length) {
        this.frames.length = 0;
        this.codes.length = 0;
        this.head = 0;
      }
      const charge = retainedBytes(frame) + OUTBOX_ITEM_OVERHEAD_BYTES;
      if (code === 0) {
        peer.send(frame!, this.onWritten, sendTag(frame, charge));
        continue;
      }
      // A close directive: its frame goes out first, then the close frame behind it on the same
      // socket, after every earlier frame. Nothing queued after a directive is sent.
      if (frame !== null) peer.send(frame, this.onDirectiveWritten, sendTag(frame, charge));
      else this.chargedBytes -= charge;
      // Anything the binary queued after its directive is for a phone it closed itself.
      this.stop('phone_gone');
      this.hooks.onDirective(code);
      return;
    }
  }

  private readonly onWritten = (err: Error | undefined, tag: number): void => {
    this.chargedBytes -= Math.floor(tag / TAG_LENGTH_SPAN);
    if (err !== undefined) {
      this.hooks.onFramesDropped(1, this.stopReason ?? 'write_failed');
      this.fail(this.directiveCode, WRITE_FAILED_REASON, 'write_failed');
      return;
    }
    this.hooks.onFrameWritten(tag % TAG_LENGTH_SPAN);
    this.pump();
  };

  private readonly onDirectiveWritten = (err: Error | undefined, tag: number): void => {
    this.chargedBytes -= Math.floor(tag / TAG_LENGTH_SPAN);
    if (err !== undefined) {
      this.hooks.onFramesDropped(1, this.stopReason === 'shutdown' ? 'shutdown' : 'write_failed');
      this.hooks.onDirectiveFrameFailed(this.directiveCode, err);
    } else {
      this.hooks.onFrameWritten(tag % TAG_LENGTH_SPAN);
    }
  };
}
