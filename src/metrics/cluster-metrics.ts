// The pyrycode_relay_cluster_* families (docs/metrics.md, "Cluster mode"). Created only by the
// cluster module, so a relay without --cluster exports exactly the families it always did. Like
// metrics.ts: hot-path tallies are plain integers read at collection, control-plane events are
// synchronous counters with frozen attributes, every cell is pre-bound at 0, and label values are
// constants (never a server-id, a conn_id or an instance id).

import type { Attributes, Counter, Histogram, Meter } from '@opentelemetry/api';

export type DirectoryOp = 'create' | 'delete' | 'get' | 'lease' | 'update';
export type DirectoryResult = 'conflict' | 'error' | 'ok';
export type ProbeResult = 'alive' | 'dead' | 'grace' | 'no_responders' | 'timeout';
export type LinkDrop = 'engine_down' | 'seq_gap' | 'stale_epoch' | 'unknown_conn';
export type FenceReason = 'lease_lost' | 'superseded';
export type RefusalReason = 'engine_down' | 'fenced';
export type ClusterEndpoint = 'client' | 'server';
export type AuditSide = 'holder' | 'home';

const DIRECTORY_OPS: readonly DirectoryOp[] = ['create', 'delete', 'get', 'lease', 'update'];
const DIRECTORY_RESULTS: readonly DirectoryResult[] = ['conflict', 'error', 'ok'];
const PROBE_RESULTS: readonly ProbeResult[] = ['alive', 'dead', 'grace', 'no_responders', 'timeout'];
const LINK_DROPS: readonly LinkDrop[] = ['engine_down', 'seq_gap', 'stale_epoch', 'unknown_conn'];
const FENCE_REASONS: readonly FenceReason[] = ['lease_lost', 'superseded'];
const REFUSAL_REASONS: readonly RefusalReason[] = ['engine_down', 'fenced'];
const ENDPOINTS: readonly ClusterEndpoint[] = ['client', 'server'];
const AUDIT_SIDES: readonly AuditSide[] = ['holder', 'home'];

/** Directory operations are milliseconds on a LAN; the top buckets catch an engine in trouble. */
const DIRECTORY_BUCKETS_SECONDS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5];

export const CLUSTER_HELP = {
  auditDrops:
    'Cross-instance phones given up because an audit found the other side no longer knew them, by the side that gave up (home: a phone its holder no longer held, its binary told 1001; holder: a phone its home no longer knew, closed 1012).',
  directoryOpDuration: 'Latency of directory operations on the cluster engine, by operation.',
  directoryOps:
    'Directory operations on the cluster engine by operation and result (conflict: a compare-and-swap lost).',
  engineConnected: 'Whether this instance is connected to the cluster engine (1) or not (0).',
  engineReconnects: 'Reconnections to the cluster engine since start.',
  fences:
    'Times this instance fenced itself (closed its binaries and cross-instance phones with 1012 and refused new claims), by reason.',
  homedRemotePhones: 'Phones held by other instances whose server-id is homed here (proxies in this registry).',
  instances: 'Relay instances whose lease the engine held at the last renewal, this one included.',
  linkBytes:
    'Frame bytes carried between instances, by direction (out: handed to the engine here; in: delivered from the engine here).',
  linkDropped:
    'Frame records from other instances not delivered, by reason (seq_gap: a sequence gap, stale_epoch: from an old claim, unknown_conn: the phone is gone, engine_down: not sent because the engine was unreachable).',
  linkFrames:
    'Frame records carried between instances, by direction. Cluster-wide, the sum of out equals the sum of in plus the sum of dropped.',
  linkInflightBytes: 'Frame bytes batched for the engine and not yet handed to it.',
  probes: 'Liveness probes of an incumbent held by another instance, by result.',
  refusals: 'Upgrade requests answered 503 because the cluster engine could not decide, by endpoint and reason.',
  remotePhones: 'Phones held here whose server-id is homed on another instance.',
} as const;

export interface ClusterGaugeSource {
  readonly engineConnected: boolean;
  readonly instancesSeen: number;
  readonly remotePhones: number;
  readonly homedRemotePhones: number;
  readonly inflightBytes: number;
}

export class ClusterMetrics {
  linkFramesOut = 0;
  linkFramesIn = 0;
  linkBytesOut = 0;
  linkBytesIn = 0;
  readonly linkDropped: Record<LinkDrop, number> = { engine_down: 0, seq_gap: 0, stale_epoch: 0, unknown_conn: 0 };
  private readonly ops: Counter;
  private readonly opCells = new Map<string, Attributes>();
  private readonly opDuration: Histogram;
  private readonly opDurationCells = new Map<DirectoryOp, Attributes>();
  private readonly probes: Counter;
  private readonly probeCells = new Map<ProbeResult, Attributes>();
  private readonly fences: Counter;
  private readonly fenceCells = new Map<FenceReason, Attributes>();
  private readonly refusals: Counter;
  private readonly refusalCells = new Map<string, Attributes>();
  private readonly reconnects: Counter;
  private readonly auditDrops: Counter;
  private readonly auditCells = new Map<AuditSide, Attributes>();

  constructor(meter: Meter, source: ClusterGaugeSource) {
    // Name order, like metrics.ts.
    this.auditDrops = meter.createCounter('pyrycode_relay_cluster_audit_drops_total', {
      description: CLUSTER_HELP.auditDrops,
    });
    for (const side of AUDIT_SIDES) {
      const attrs = Object.freeze({ side });
      this.auditCells.set(side, attrs);
      this.auditDrops.add(0, attrs);
    }
    this.opDuration = meter.createHistogram('pyrycode_relay_cluster_directory_op_duration_seconds', {
      description: CLUSTER_HELP.directoryOpDuration,
      unit: 's',
      advice: { explicitBucketBoundaries: DIRECTORY_BUCKETS_SECONDS },
    });
    for (const op of DIRECTORY_OPS) this.opDurationCells.set(op, Object.freeze({ op }));
    this.ops = meter.createCounter('pyrycode_relay_cluster_directory_ops_total', {
      description: CLUSTER_HELP.directoryOps,
    });
    for (const op of DIRECTORY_OPS) {
      for (const result of DIRECTORY_RESULTS) {
        const attrs = Object.freeze({ op, result });
        this.opCells.set(`${op}/${result}`, attrs);
        this.ops.add(0, attrs);
      }
    }
    meter
      .createObservableGauge('pyrycode_relay_cluster_engine_connected', { description: CLUSTER_HELP.engineConnected })
      .addCallback((r) => r.observe(source.engineConnected ? 1 : 0));
    this.reconnects = meter.createCounter('pyrycode_relay_cluster_engine_reconnects_total', {
      description: CLUSTER_HELP.engineReconnects,
    });
    this.reconnects.add(0);
    this.fences = meter.createCounter('pyrycode_relay_cluster_fences_total', { description: CLUSTER_HELP.fences });
    for (const reason of FENCE_REASONS) {
      const attrs = Object.freeze({ reason });
      this.fenceCells.set(reason, attrs);
      this.fences.add(0, attrs);
    }
    meter
      .createObservableGauge('pyrycode_relay_cluster_homed_remote_phones', {
        description: CLUSTER_HELP.homedRemotePhones,
      })
      .addCallback((r) => r.observe(source.homedRemotePhones));
    meter
      .createObservableGauge('pyrycode_relay_cluster_instances', { description: CLUSTER_HELP.instances })
      .addCallback((r) => r.observe(source.instancesSeen));
    const IN = Object.freeze({ direction: 'in' });
    const OUT = Object.freeze({ direction: 'out' });
    meter
      .createObservableCounter('pyrycode_relay_cluster_link_bytes_total', { description: CLUSTER_HELP.linkBytes })
      .addCallback((r) => {
        r.observe(this.linkBytesIn, IN);
        r.observe(this.linkBytesOut, OUT);
      });
    const dropCells = LINK_DROPS.map((reason) => [reason, Object.freeze({ reason })] as const);
    meter
      .createObservableCounter('pyrycode_relay_cluster_link_frames_dropped_total', {
        description: CLUSTER_HELP.linkDropped,
      })
      .addCallback((r) => {
        for (const [reason, attrs] of dropCells) r.observe(this.linkDropped[reason], attrs);
      });
    meter
      .createObservableCounter('pyrycode_relay_cluster_link_frames_total', { description: CLUSTER_HELP.linkFrames })
      .addCallback((r) => {
        r.observe(this.linkFramesIn, IN);
        r.observe(this.linkFramesOut, OUT);
      });
    meter
      .createObservableGauge('pyrycode_relay_cluster_link_inflight_bytes', {
        description: CLUSTER_HELP.linkInflightBytes,
      })
      .addCallback((r) => r.observe(source.inflightBytes));
    this.probes = meter.createCounter('pyrycode_relay_cluster_probes_total', { description: CLUSTER_HELP.probes });
    for (const result of PROBE_RESULTS) {
      const attrs = Object.freeze({ result });
      this.probeCells.set(result, attrs);
      this.probes.add(0, attrs);
    }
    this.refusals = meter.createCounter('pyrycode_relay_cluster_refusals_total', {
      description: CLUSTER_HELP.refusals,
    });
    for (const endpoint of ENDPOINTS) {
      for (const reason of REFUSAL_REASONS) {
        const attrs = Object.freeze({ endpoint, reason });
        this.refusalCells.set(`${endpoint}/${reason}`, attrs);
        this.refusals.add(0, attrs);
      }
    }
    meter
      .createObservableGauge('pyrycode_relay_cluster_remote_phones', { description: CLUSTER_HELP.remotePhones })
      .addCallback((r) => r.observe(source.remotePhones));
  }

  directoryOp(op: DirectoryOp, result: DirectoryResult, seconds: number): void {
    this.ops.add(1, this.opCells.get(`${op}/${result}`));
    this.opDuration.record(seconds, this.opDurationCells.get(op));
  }

  probe(result: ProbeResult): void {
    this.probes.add(1, this.probeCells.get(result));
  }

  fenced(reason: FenceReason): void {
    this.fences.add(1, this.fenceCells.get(reason));
  }

  refused(endpoint: ClusterEndpoint, reason: RefusalReason): void {
    this.refusals.add(1, this.refusalCells.get(`${endpoint}/${reason}`));
  }

  auditDropped(side: AuditSide): void {
    this.auditDrops.add(1, this.auditCells.get(side));
  }

  reconnected(): void {
    this.reconnects.add(1);
  }
}
