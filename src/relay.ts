// The relay: registry, counters, limiter, cap and the connection handlers, attached to any number
// of HTTP(S) servers. It receives a Meter and a Logger; it never builds telemetry itself.

import type { Server as HttpServer } from 'node:http';
import type { Meter } from '@opentelemetry/api';
import { WebSocketServer } from 'ws';
import { BinarySession } from './session/binary-session.js';
import { ConnCap } from './http/conn-cap.js';
import type { RelayContext, RelayTimings } from './session/context.js';
import { healthBody, readiness } from './http/health.js';
import type { Logger } from './log.js';
import { ThrottledLogger } from './log-throttle.js';
import { RelayMetrics } from './metrics/metrics.js';
import { CLOSE_HANDSHAKE_TIMEOUT_MS, MESSAGE_READ_TIMEOUT_MS, RelaySocket } from './session/peer.js';
import { CLOSE_NORMAL, SHUTDOWN_CODE, SHUTDOWN_REASON } from './protocol/close-codes.js';
import { PhoneSession } from './session/phone-session.js';
import { PushWaker, type PushOptions } from './push/waker.js';
import { RateLimiter } from './http/rate-limiter.js';
import { Registry } from './session/registry.js';
import type { ClusterFactory, ClusterRole, Directory } from './session/directory.js';
import type { BinaryLink, PhoneLink } from './session/links.js';
import { createPipeline } from './http/upgrade.js';
import { VERSION } from './version.js';

/** Largest inbound message; bigger ones are closed with 1009 by ws. */
export const MAX_MESSAGE_BYTES = 256 * 1024;

export interface RelayOptions {
  gracePeriodMs: number;
  heartbeatIntervalMs: number;
  probeTimeoutMs: number;
  maxPhonesPerServer: number;
  maxConnections: number;
  rateLimitBurst: number;
  rateLimitIntervalMs: number;
  trustXForwardedFor: boolean;
  /** Bound of the rate limiter's bucket table; only tests shrink it (RATE_LIMIT_MAX_BUCKETS). */
  rateLimitMaxBuckets?: number;
  /** Per-message read deadline; only tests shorten it. */
  messageReadTimeoutMs?: number;
  version?: string;
  /** FCM push wakes; absent or null = push off (and no push_wakes_total family). */
  push?: PushOptions | null;
  /** Cluster mode (src/cluster/, loaded by main.ts only with --cluster); absent = one process. */
  cluster?: ClusterFactory | null;
  /** --https-proxy-protocol is on (the proxy_protocol_refusals_total family exists). */
  proxyProtocol?: boolean;
  /** TLS modes: expiry of the served certificate in Unix ms, null while there is none. */
  tlsCertExpiryMs?: () => number | null;
}

type Session = BinarySession | PhoneSession;

export class Relay implements RelayContext {
  /** The slots homed here (in cluster mode too: the cluster role wraps it). */
  readonly registry: Registry<BinarySession, PhoneSession>;
  readonly directory: Directory;
  /** Null without --cluster. */
  readonly cluster: ClusterRole | null;
  readonly metrics: RelayMetrics;
  readonly timings: RelayTimings;
  readonly limiter: RateLimiter;
  readonly cap: ConnCap;
  /** Closed by the daemon after the drain (docs/operations.md, "The drain, step by step"), not by drain() itself. */
  readonly push: PushWaker;
  readonly version: string;
  readonly startedAtMs = Date.now();
  private readonly wss: WebSocketServer;
  private readonly sessions = new Set<Session>();
  private readonly sessionEnded = new Set<() => void>();
  private drainingFlag = false;
  private notReady = false;
  private readonly pipeline: ReturnType<typeof createPipeline>;
  /** Every relay event goes through the per-cause throttle (log-throttle.ts). */
  readonly log: ThrottledLogger;

  constructor(options: RelayOptions, meter: Meter, log: Logger) {
    this.log = new ThrottledLogger(log);
    this.log.start();
    this.version = options.version ?? VERSION;
    this.timings = {
      heartbeatIntervalMs: options.heartbeatIntervalMs,
      probeTimeoutMs: options.probeTimeoutMs,
      messageReadTimeoutMs: options.messageReadTimeoutMs ?? MESSAGE_READ_TIMEOUT_MS,
    };
    this.registry = new Registry<BinarySession, PhoneSession>({
      gracePeriodMs: options.gracePeriodMs,
      maxPhonesPerServer: options.maxPhonesPerServer,
      onGraceExpired: (serverId, phones) => {
        if (this.cluster === null) this.graceExpired(phones);
        else this.cluster.graceExpired(serverId, phones, this.graceExpired);
      },
    });
    this.metrics = new RelayMetrics(meter, this, {
      gracePeriodMs: options.gracePeriodMs,
      version: this.version,
      push: options.push != null,
      ...(options.proxyProtocol === true ? { proxyProtocol: true } : {}),
      ...(options.tlsCertExpiryMs === undefined ? {} : { tlsCertExpiryMs: options.tlsCertExpiryMs }),
    });
    this.push = PushWaker.create(options.push, this.metrics, this.log);
    this.limiter = new RateLimiter({
      burst: options.rateLimitBurst,
      refillIntervalMs: options.rateLimitIntervalMs,
      ...(options.rateLimitMaxBuckets === undefined ? {} : { maxBuckets: options.rateLimitMaxBuckets }),
    });
    this.cluster =
      options.cluster == null
        ? null
        : options.cluster(this.registry as unknown as Registry<BinaryLink, PhoneLink>, {
            metrics: this.metrics,
            maxPhonesPerServer: options.maxPhonesPerServer,
            gracePeriodMs: options.gracePeriodMs,
            probeTimeoutMs: options.probeTimeoutMs,
            graceExpired: this.graceExpired,
          });
    this.directory = this.cluster === null ? this.registry : this.cluster.directory;
    this.limiter.startSweeper();
    this.cap = new ConnCap(options.maxConnections);
    this.wss = new WebSocketServer({
      // closeTimeout (ws >= 8.19) is missing from @types/ws.
      ...({ closeTimeout: CLOSE_HANDSHAKE_TIMEOUT_MS } as object),
      noServer: true,
      // Each connection's WebSocket knows its Peer: one shared listener per event, no closures.
      WebSocket: RelaySocket,
      clientTracking: false,
      maxPayload: MAX_MESSAGE_BYTES,
      perMessageDeflate: false,
      handleProtocols: () => false, // never echo a subprotocol
      // Peer answers pings itself and closes a ping flood with 1008 (ws would drop TCP silently).
      autoPong: false,
    });
    this.pipeline = createPipeline({
      limiter: this.limiter,
      cap: this.cap,
      metrics: this.metrics,
      log: this.log,
      wss: this.wss,
      trustXForwardedFor: options.trustXForwardedFor,
      isDraining: () => this.drainingFlag,
      unavailable:
        this.cluster === null ? undefined : (endpoint, serverId) => this.cluster!.refuses(endpoint, serverId),
      health: () => healthBody(this),
      readiness: () => readiness(this.ready),
      onConnection: (ws, admitted, release) => {
        const session: Session =
          admitted.endpoint === 'server'
            ? new BinarySession(
                this,
                ws,
                { serverId: admitted.serverId, binaryVersion: admitted.label, remote: admitted.remote },
                release,
                this.endSession,
              )
            : new PhoneSession(
                this,
                ws,
                { serverId: admitted.serverId, deviceName: admitted.label, remote: admitted.remote },
                release,
                this.endSession,
              );
        this.sessions.add(session);
        session.start();
      },
    });
  }

  /** A session's handler ended: one function for every session (no closure per connection). */
  private readonly endSession = (session: Session): void => {
    this.sessions.delete(session);
    session.releaseSlot();
    this.notifyEnded();
  };

  /** A grace window ran out and this instance settles it: plain 1000 with an empty reason (the
   * reference's deliberate choice), then the count. */
  private readonly graceExpired = (phones: PhoneLink[]): void => {
    for (const phone of phones) phone.closeWith(CLOSE_NORMAL, '', 'grace_expired');
    this.metrics.graceExpired();
  };

  get draining(): boolean {
    return this.drainingFlag;
  }

  /** False from the moment a drain starts (/readyz answers 503, the ready gauge reads 0). */
  get ready(): boolean {
    return !this.notReady && !this.drainingFlag;
  }

  /** Live counts (docs/operations.md, "Health and readiness checks"), for /healthz and the gauges. */
  counts(): { binaries: number; phones: number } {
    return this.cluster === null ? this.registry.counts() : this.cluster.counts();
  }

  parkedPhones(): number {
    return this.cluster === null ? this.registry.parkedPhones() : this.cluster.parkedPhones();
  }

  logLines(): { suppressed: Readonly<Record<string, number>>; dropped: number } {
    return { suppressed: this.log.suppressed, dropped: this.log.droppedLines };
  }

  /** First step of a drain: fail readiness so load balancers stop routing here, while existing
   * and new connections are still served (see --drain-delay). */
  markNotReady(): void {
    this.notReady = true;
  }

  /** Number of WebSocket connections whose handler has not ended. */
  get liveConnections(): number {
    return this.sessions.size;
  }

  /** Serve the relay's routes on this server. */
  attach(server: HttpServer): void {
    server.on('request', this.pipeline.onRequest);
    server.on('upgrade', this.pipeline.onUpgrade);
    server.on('clientError', this.pipeline.onClientError);
  }

  /** Starts a drain: nothing new is admitted, every connection is closed (phones first, so their
   * close notices reach a binary before its own close frame) with 1001 "shutting down"; a binary
   * still in its conflict probe gets 1000. Resolves true when every handler ended, false if
   * `timeoutMs` passed first (remaining sockets are then terminated). */
  async drain(timeoutMs: number): Promise<boolean> {
    this.notReady = true;
    this.drainingFlag = true;
    this.limiter.stopSweeper();
    const phones: PhoneSession[] = [];
    const binaries: BinarySession[] = [];
    for (const session of this.sessions) {
      if (session instanceof PhoneSession) phones.push(session);
      else binaries.push(session);
    }
    for (const phone of phones) phone.closeWith(SHUTDOWN_CODE, SHUTDOWN_REASON, 'shutdown');
    for (const binary of binaries) {
      if (binary.isProbing) binary.closeWith(CLOSE_NORMAL, '', 'probe_aborted');
      else binary.closeWith(SHUTDOWN_CODE, SHUTDOWN_REASON, 'shutdown');
    }
    const complete = await this.waitForSessions(timeoutMs);
    if (!complete) for (const session of this.sessions) session.peer.terminate();
    this.registry.dispose();
    // Every suppressed line is accounted for in the log before the process exits.
    this.log.stop();
    await this.cluster?.stop();
    return complete;
  }

  private waitForSessions(timeoutMs: number): Promise<boolean> {
    if (this.sessions.size === 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.sessionEnded.delete(check);
        resolve(false);
      }, timeoutMs);
      const check = (): void => {
        if (this.sessions.size > 0) return;
        clearTimeout(timer);
        this.sessionEnded.delete(check);
        resolve(true);
      };
      this.sessionEnded.add(check);
    });
  }

  private notifyEnded(): void {
    for (const listener of [...this.sessionEnded]) listener();
  }
}
