// Process-level boot checks that need OS facts (docs/operations.md, "Production mode"). They apply only
// in production mode (PYRYCODE_RELAY_PRODUCTION=1): development and CI machines run as root
// (docs/decisions.md, "The root and capability checks apply in production mode only").
//
// readProcessFacts() gathers the facts; preflight() is pure so tests feed it synthetic facts.

import { readFileSync } from 'node:fs';

import type { RelayConfig } from './types.js';
import type { LogFields } from '../log.js';

export interface ProcessFacts {
  /** Effective uid, or null where the platform has none (Windows). */
  euid: number | null;
  /** Text of /proc/self/status, or null when unreadable or not Linux. */
  procStatus: string | null;
  platform: NodeJS.Platform;
}

export const PREFLIGHT_EVENTS = {
  root: 'refusing to start: running as root in production mode',
  capabilities: 'refusing to start: unexpected Linux capabilities',
  capabilitiesUnknown: 'refusing to start: cannot determine Linux capabilities',
} as const;

/** The one capability the relay may hold: binding ports below 1024. */
export const CAP_NET_BIND_SERVICE = 10;

/** Linux capability names by bit (linux/capability.h). */
export const LINUX_CAPABILITY_NAMES: readonly string[] = [
  'CAP_CHOWN', // 0
  'CAP_DAC_OVERRIDE',
  'CAP_DAC_READ_SEARCH',
  'CAP_FOWNER',
  'CAP_FSETID',
  'CAP_KILL', // 5
  'CAP_SETGID',
  'CAP_SETUID',
  'CAP_SETPCAP',
  'CAP_LINUX_IMMUTABLE',
  'CAP_NET_BIND_SERVICE', // 10
  'CAP_NET_BROADCAST',
  'CAP_NET_ADMIN',
  'CAP_NET_RAW',
  'CAP_IPC_LOCK',
  'CAP_IPC_OWNER', // 15
  'CAP_SYS_MODULE',
  'CAP_SYS_RAWIO',
  'CAP_SYS_CHROOT',
  'CAP_SYS_PTRACE',
  'CAP_SYS_PACCT', // 20
  'CAP_SYS_ADMIN',
  'CAP_SYS_BOOT',
  'CAP_SYS_NICE',
  'CAP_SYS_RESOURCE',
  'CAP_SYS_TIME', // 25
  'CAP_SYS_TTY_CONFIG',
  'CAP_MKNOD',
  'CAP_LEASE',
  'CAP_AUDIT_WRITE',
  'CAP_AUDIT_CONTROL', // 30
  'CAP_SETFCAP',
  'CAP_MAC_OVERRIDE',
  'CAP_MAC_ADMIN',
  'CAP_SYSLOG',
  'CAP_WAKE_ALARM', // 35
  'CAP_BLOCK_SUSPEND',
  'CAP_AUDIT_READ',
  'CAP_PERFMON',
  'CAP_BPF',
  'CAP_CHECKPOINT_RESTORE', // 40
];

const CAPS_FIX =
  'drop every capability except CAP_NET_BIND_SERVICE (e.g. docker run --cap-drop=ALL --cap-add=NET_BIND_SERVICE, or systemd CapabilityBoundingSet=CAP_NET_BIND_SERVICE)';

export function readProcessFacts(): ProcessFacts {
  const euid = typeof process.geteuid === 'function' ? process.geteuid() : null;
  let procStatus: string | null = null;
  if (process.platform === 'linux') {
    try {
      procStatus = readFileSync('/proc/self/status', 'utf8');
    } catch {
      procStatus = null;
    }
  }
  return { euid, procStatus, platform: process.platform };
}

/**
 * The effective capability mask (`CapEff:` line, hex) of a /proc/<pid>/status text, or a reason
 * why it cannot be read.
 */
export function parseCapEff(procStatus: string): { ok: true; mask: bigint } | { ok: false; reason: string } {
  const lines = procStatus.split('\n').filter((l) => l.startsWith('CapEff:'));
  if (lines.length === 0) return { ok: false, reason: 'no CapEff line in /proc/self/status' };
  if (lines.length > 1) return { ok: false, reason: 'more than one CapEff line in /proc/self/status' };
  const hex = lines[0]!.slice('CapEff:'.length).trim();
  if (!/^[0-9a-fA-F]{1,16}$/.test(hex)) {
    return { ok: false, reason: 'CapEff in /proc/self/status is not a 64-bit hex mask' };
  }
  return { ok: true, mask: BigInt('0x' + hex) };
}

/** Names of the set bits of `mask`, by bit number; `cap_<n>` for bits without a known name. */
export function capabilityNames(mask: bigint): string[] {
  const names: string[] = [];
  for (let bit = 0; bit < 64; bit++) {
    if ((mask >> BigInt(bit)) & 1n) names.push(LINUX_CAPABILITY_NAMES[bit] ?? `cap_${bit}`);
  }
  return names;
}

/**
 * Refusal for a production process running as root or with capabilities beyond
 * CAP_NET_BIND_SERVICE (Linux; other platforms skip the capability check), else null.
 * Outside production mode it always returns null.
 */
export function preflight(config: RelayConfig, facts: ProcessFacts): { event: string; fields: LogFields } | null {
  if (!config.production) return null;
  if (facts.euid === 0) {
    return {
      event: PREFLIGHT_EVENTS.root,
      fields: {
        effective_uid: 0,
        fix: 'run as an unprivileged user (e.g. uid 65532); grant CAP_NET_BIND_SERVICE if it must bind ports below 1024',
      },
    };
  }
  if (facts.platform !== 'linux') return null;
  if (facts.procStatus === null) {
    return {
      event: PREFLIGHT_EVENTS.capabilitiesUnknown,
      fields: {
        reason: 'cannot read /proc/self/status',
        fix: 'run with /proc mounted so the capability check can run',
      },
    };
  }
  const cap = parseCapEff(facts.procStatus);
  if (!cap.ok) {
    return {
      event: PREFLIGHT_EVENTS.capabilitiesUnknown,
      fields: { reason: cap.reason, fix: 'run with /proc mounted so the capability check can run' },
    };
  }
  const extra = cap.mask & ~(1n << BigInt(CAP_NET_BIND_SERVICE));
  if (extra === 0n) return null;
  return {
    event: PREFLIGHT_EVENTS.capabilities,
    fields: { value: capabilityNames(extra).join(','), fix: CAPS_FIX },
  };
}
