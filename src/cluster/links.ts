// Proxies that let the sessions of one instance talk to a binary or phone held by another, through
// the same links.ts interfaces as a local peer (so the sessions do not know the difference).
// - RemotePhone lives in the home's registry, for a phone whose socket another instance holds.
// - RemoteBinary is what a holder's phones see as their binary when the home is elsewhere.
// - RemoteIncumbent stands for a binary held elsewhere during a conflicting claim.
// They only turn calls into records; role.ts numbers, batches, sends and checks them.

import type { CloseReason } from '../metrics/metrics.js';
import { joinEnvelope } from '../protocol/envelope.js';
import type { BinaryLink, PhoneLink } from '../session/links.js';

/** What the proxies need from the cluster role. */
export interface LinkSender {
  phoneFrame(phone: RemotePhone, frame: Buffer | null, closeCode: number): void;
  phoneControl(phone: RemotePhone, kind: 'pause' | 'resume'): void;
  phoneClosed(phone: RemotePhone, code: number, reason: string, why: CloseReason): void;
  phoneForwarded(phone: RemotePhone, err: Error | undefined, bytes: number): void;
  binaryFrame(binary: RemoteBinary, phone: PhoneLink, envelope: Buffer): void;
  binaryNotice(binary: RemoteBinary, notice: Buffer, done: (err: Error | undefined) => void): void;
}

/** At the home: a phone whose socket is on instance `holder`. */
export class RemotePhone implements PhoneLink {
  /** Next sequence number towards the phone, and the next one expected from it. */
  seqOut = 0;
  seqIn = 0;
  closed = false;
  /** Audits in a row that found its holder not holding it (role.ts, "Audits"). */
  auditMisses = 0;

  constructor(
    private readonly sender: LinkSender,
    readonly serverId: string,
    readonly connId: string,
    readonly holder: string,
    readonly epoch: number,
    /** The binary when the phone registered (close-notice identity check, as in phone-session.ts). */
    readonly binaryAtRegistration: BinaryLink | undefined,
  ) {}

  deliver(frame: Buffer | null, closeCode: number): void {
    this.sender.phoneFrame(this, frame, closeCode);
  }

  readonly onForwarded = (err: Error | undefined, bytes: number): void => {
    this.sender.phoneForwarded(this, err, bytes);
  };

  pauseReading(): void {
    this.sender.phoneControl(this, 'pause');
  }

  resumeReading(): void {
    this.sender.phoneControl(this, 'resume');
  }

  closeWith(code: number, reason: string, why: CloseReason): void {
    if (this.closed) return;
    this.closed = true;
    this.sender.phoneClosed(this, code, reason, why);
  }
}

/** At a holder: the binary of a server-id homed on instance `home`, shared by the phones here. */
export class RemoteBinary implements BinaryLink {
  /** Phones registered through this proxy. */
  phones = 0;
  /** Set once the home's lease was seen missing: the grace timer holders run for a dead home. */
  orphanTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly sender: LinkSender,
    readonly serverId: string,
    readonly key: string,
    readonly home: string,
    readonly homeBoot: string,
    readonly epoch: number,
  ) {}

  forward(phone: PhoneLink, envelope: Buffer): void {
    this.sender.binaryFrame(this, phone, envelope);
  }

  /** The record carries the envelope in one piece (a copy, whatever `copyFrame` says). */
  forwardJoined(phone: PhoneLink, prefix: Buffer, frame: Buffer): void {
    this.sender.binaryFrame(this, phone, joinEnvelope(prefix, frame));
  }

  drained(): void {}

  notify(notice: Buffer, done: (err: Error | undefined) => void): void {
    this.sender.binaryNotice(this, notice, done);
  }

  probe(): Promise<boolean> {
    return Promise.resolve(false);
  }

  /** Closing the binary is its home's business (an eviction record reaches it). */
  closeWith(): void {}
}

/** A binary held by another instance, already probed through its home. */
export class RemoteIncumbent implements BinaryLink {
  constructor(
    readonly key: string,
    readonly revision: number,
    private readonly alive: boolean,
  ) {}

  probe(): Promise<boolean> {
    return Promise.resolve(this.alive);
  }

  forward(): void {}
  forwardJoined(): void {}
  drained(): void {}
  notify(_notice: Buffer, done: (err: Error | undefined) => void): void {
    done(undefined);
  }
  /** Its home closes it when the takeover's eviction record arrives. */
  closeWith(): void {}
}
