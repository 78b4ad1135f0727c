// The seam between the sessions and where server-ids live. Sessions ask a Directory to claim,
// register, release and look up; they never know whether the answer came from this process or
// from a cluster engine. The single-process default is the Registry itself (it satisfies this
// interface with synchronous answers, so the default path costs exactly what it did). A cluster
// engine (src/cluster/, loaded only with --cluster) answers claims and registrations with a
// promise and hands back proxy links for a binary or phone held by another instance
// (docs/architecture.md, "Directory and bus: the cluster seam").

import type { RelayMetrics } from '../metrics/metrics.js';
import type { BinaryLink, PhoneLink } from './links.js';
import type { ClaimDecision, RegisterDecision, Registry, TakeoverDecision } from './registry.js';

/** A value now (the in-memory directory) or later (a cluster engine). Never rejects: an engine
 * failure is its own answer (see DirectoryUnavailable). */
export type Answer<T> = T | Promise<T>;

/** A cluster engine could not decide (it is unreachable or this instance is fenced). */
export interface DirectoryUnavailable {
  kind: 'unavailable';
}

export interface Directory {
  /** First-claim-wins (Registry.claim). */
  claim(serverId: string, binary: BinaryLink): Answer<ClaimDecision<BinaryLink, PhoneLink> | DirectoryUnavailable>;
  /** The probe found `incumbent` dead (Registry.takeover). */
  takeover(
    serverId: string,
    binary: BinaryLink,
    incumbent: BinaryLink,
  ): Answer<TakeoverDecision<BinaryLink, PhoneLink> | DirectoryUnavailable>;
  /** A binary's connection ended (Registry.release, scoped to this binary). */
  release(serverId: string, binary: BinaryLink): boolean;
  registerPhone(serverId: string, phone: PhoneLink): Answer<RegisterDecision | 'unavailable'>;
  unregisterPhone(serverId: string, phone: PhoneLink): boolean;
  /** The binary (or its proxy) for a server-id; looked up per frame. */
  binaryFor(serverId: string): BinaryLink | undefined;
  /** The phone (or its proxy) a binary addresses; looked up per frame. */
  phoneFor(serverId: string, connId: string): PhoneLink | undefined;
}

/** What a cluster engine adds to a Relay. Built by the cluster module from the relay's own
 * in-memory registry (which keeps holding the slots homed on this instance). */
export interface ClusterRole {
  readonly directory: Directory;
  /** Local sockets only: every instance's gauges sum to the cluster's. */
  counts(): { binaries: number; phones: number };
  parkedPhones(): number;
  /** Refusal before the upgrade (HTTP 503) while the engine cannot decide; counted by the role. */
  refuses(endpoint: 'server' | 'client', serverId: string): boolean;
  /** The local registry's grace timer fired: the role settles it cluster-wide and calls
   * `expired` (close the phones with 1000, count the expiry) only if this instance won. */
  graceExpired(serverId: string, phones: PhoneLink[], expired: (phones: PhoneLink[]) => void): void;
  /** The relay drains: stop taking part (no new claims are answered for this instance). */
  stop(): Promise<void>;
}

/** How a cluster module plugs into a Relay. */
export type ClusterFactory = (local: Registry<BinaryLink, PhoneLink>, host: ClusterHost) => ClusterRole;

/** What the Relay lends the cluster role (sessions, counters and timings stay the relay's). */
export interface ClusterHost {
  /** The relay's counters: frames are counted where the socket is written. */
  readonly metrics: RelayMetrics;
  readonly maxPhonesPerServer: number;
  readonly gracePeriodMs: number;
  readonly probeTimeoutMs: number;
  /** Grace expiry of a slot whose home is gone: close these phones with 1000 and count it. */
  graceExpired(phones: PhoneLink[]): void;
}
