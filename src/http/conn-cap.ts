// Global connection cap (docs/protocol.md, "Limits that refuse a connection"): one pool for binaries and phones.
// Try-acquire, never queues. A slot covers a WebSocket handler's whole lifetime, including stillborn connections that
// are closed right after the upgrade and the conflict probe.

export class ConnCap {
  private inUse = 0;

  constructor(readonly max: number) {}

  tryAcquire(): boolean {
    if (this.inUse >= this.max) return false;
    this.inUse++;
    return true;
  }

  release(): void {
    if (this.inUse > 0) this.inUse--;
  }

  get used(): number {
    return this.inUse;
  }
}
