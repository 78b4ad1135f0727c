// Heartbeat (docs/protocol.md, "Heartbeat: answer pings"): every interval, ping; if the previous ping got no pong by
// the next tick, the peer is dead. Worst-case detection is two intervals. The heartbeat never
// closes anything on normal teardown: stop() just takes it off the wheel.
//
// All heartbeats with the same interval share one timer (a wheel of HEARTBEAT_WHEEL_SLOTS slots,
// one slot visited per interval / slots): an idle relay holding 100,000 peers runs one interval
// timer instead of 100,000, keeps no timer object or closure per peer, and its pings are spread
// over the interval instead of bunched. A heartbeat joins the slot visited last, so its first
// ping comes between (1 - 1/slots) and 1 interval after start(), and every later one exactly one
// interval after the previous.

import type { Peer } from './peer.js';

/** Who is told when the peer missed its pong (a session, itself: no closure per connection). */
export interface HeartbeatOwner {
  heartbeatTimedOut(): void;
}

/** Slots of a wheel: with the default interval one slot every ~940 ms. */
export const HEARTBEAT_WHEEL_SLOTS = 32;

export class Heartbeat {
  private pingSentAt = -1;
  /** The wheel this heartbeat is on while started, else undefined. */
  private wheel: HeartbeatWheel | undefined;
  /** Its slot on that wheel (the wheel's bookkeeping; -1 while stopped). */
  slot = -1;

  constructor(
    private readonly peer: Peer,
    private readonly intervalMs: number,
    private readonly owner: HeartbeatOwner,
  ) {}

  start(): void {
    if (this.wheel !== undefined) return;
    this.wheel = HeartbeatWheel.for(this.intervalMs);
    this.wheel.add(this);
  }

  stop(): void {
    this.wheel?.remove(this);
    this.wheel = undefined;
  }

  /** One interval passed for this peer (called by its wheel). */
  tick(): void {
    // A peer already closing (its close frame arrived, or its socket ended) is not due for a
    // heartbeat: its close completes within the close-handshake timeout and must keep its own code.
    if (this.peer.isClosing) {
      this.stop();
      return;
    }
    // While the relay holds this peer back (its binary is slow) it does not read the peer's
    // pongs either; that silence is the relay's doing, not the peer's. The binary's own send
    // deadline bounds how long a pause can last.
    if (this.peer.isPaused) {
      this.pingSentAt = -1;
      return;
    }
    if (this.pingSentAt >= 0 && this.peer.lastPong < this.pingSentAt) {
      this.stop();
      this.owner.heartbeatTimedOut();
      return;
    }
    this.pingSentAt = performance.now();
    if (!this.peer.ping()) {
      this.stop();
      this.owner.heartbeatTimedOut();
    }
  }
}

/** One timer for every heartbeat of one interval; it runs only while it holds a heartbeat. */
class HeartbeatWheel {
  private static readonly wheels = new Map<number, HeartbeatWheel>();

  static for(intervalMs: number): HeartbeatWheel {
    let wheel = HeartbeatWheel.wheels.get(intervalMs);
    if (wheel === undefined) {
      wheel = new HeartbeatWheel(intervalMs);
      HeartbeatWheel.wheels.set(intervalMs, wheel);
    }
    return wheel;
  }

  private readonly slots: Set<Heartbeat>[] = Array.from({ length: HEARTBEAT_WHEEL_SLOTS }, () => new Set());
  private size = 0;
  /** The slot the next tick visits. */
  private cursor = 0;
  private timer: ReturnType<typeof setInterval> | undefined;

  private constructor(private readonly intervalMs: number) {}

  add(heartbeat: Heartbeat): void {
    // The slot visited last comes round again one full interval from now.
    const slot = (this.cursor + HEARTBEAT_WHEEL_SLOTS - 1) % HEARTBEAT_WHEEL_SLOTS;
    this.slots[slot]!.add(heartbeat);
    heartbeat.slot = slot;
    this.size++;
    this.timer ??= setInterval(this.tick, this.intervalMs / HEARTBEAT_WHEEL_SLOTS);
  }

  remove(heartbeat: Heartbeat): void {
    if (heartbeat.slot < 0 || !this.slots[heartbeat.slot]!.delete(heartbeat)) return;
    heartbeat.slot = -1;
    if (--this.size === 0) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  private readonly tick = (): void => {
    const slot = this.slots[this.cursor]!;
    this.cursor = (this.cursor + 1) % HEARTBEAT_WHEEL_SLOTS;
    // A copy: a heartbeat started by a timeout's consequences joins this slot for next time, and
    // must not be pinged now.
    for (const heartbeat of [...slot]) heartbeat.tick();
  };
}
