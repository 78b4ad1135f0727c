// Heartbeat (docs/protocol.md, "Heartbeat: answer pings"): every interval, ping; if the previous ping got no pong by
// the next tick, the peer is dead. Worst-case detection is two intervals. The heartbeat never
// closes anything on normal teardown: stop() just cancels the timer.

import type { Peer } from './peer.js';

export class Heartbeat {
  private timer: ReturnType<typeof setInterval> | undefined;
  private pingSentAt = -1;

  constructor(
    private readonly peer: Peer,
    private readonly intervalMs: number,
    private readonly onTimeout: () => void,
  ) {}

  start(): void {
    if (this.timer !== undefined) return;
    this.timer = setInterval(this.tick, this.intervalMs);
  }

  stop(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private readonly tick = (): void => {
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
      this.onTimeout();
      return;
    }
    this.pingSentAt = performance.now();
    if (!this.peer.ping()) {
      this.stop();
      this.onTimeout();
    }
  };
}
