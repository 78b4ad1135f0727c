// What crosses between a binary's session and its phones' sessions, and nothing more. The two
// session classes only know each other through these interfaces (as DERP's PacketForwarder exists
// "for circular dependency reasons"), so either side can be replaced, for example by a proxy for a
// phone or binary held elsewhere, without the other noticing.

import type { CloseReason } from '../metrics/metrics.js';
import type { RegisteredPhone } from './registry.js';

/** What a binary's session needs from one of its phones. */
export interface PhoneLink extends RegisteredPhone {
  /** Routes one frame (or a close directive when `closeCode` is not 0) into the phone's outbox. */
  deliver(frame: Buffer | null, closeCode: number): void;
  /** Completion of one envelope send to the binary; `bytes` is the envelope's length. */
  readonly onForwarded: (err: Error | undefined, bytes: number) => void;
  /** Stops reading the phone while the binary is backed up... */
  pauseReading(): void;
  /** ...and reads it again once the binary drained. */
  resumeReading(): void;
  /** Relay-initiated close; `why` is what the close counts as. */
  closeWith(code: number, reason: string, why: CloseReason): void;
}

/** What a phone's session needs from the binary holding its server-id, and what a challenger
 * needs from an incumbent binary. */
export interface BinaryLink {
  /** Sends one envelope for `phone`; `phone.onForwarded` reports success or failure. */
  forward(phone: PhoneLink, envelope: Buffer): void;
  /** Sends the envelope `prefix` + `frame` + `}` for `phone` without joining the pieces first
   * (`frame` is already what Go would emit); reported like forward. With `copyFrame` the frame
   * must not stay referenced after the call (it is a small part of a larger buffer). */
  forwardJoined(phone: PhoneLink, prefix: Buffer, frame: Buffer, copyFrame: boolean): void;
  /** After each completed forward (and close notice): lets paused phones go once the socket drained. */
  drained(): void;
  /** Sends a close notice (not counted as a forwarded frame). */
  notify(notice: Buffer, done: (err: Error | undefined) => void): void;
  /** The liveness probe: true if the binary answered a ping within `timeoutMs`. */
  probe(timeoutMs: number): Promise<boolean>;
  /** Relay-initiated close; `why` is what the close counts as. */
  closeWith(code: number, reason: string, why: CloseReason): void;
}
