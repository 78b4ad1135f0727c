import { describe, expect, it } from 'vitest';

import { parseConfig } from '../../src/config/parse.js';
import type { RelayConfig } from '../../src/config/types.js';
import { LOG_KEYS } from '../../src/log.js';
import {
  PREFLIGHT_EVENTS,
  capabilityNames,
  parseCapEff,
  preflight,
  readProcessFacts,
  type ProcessFacts,
} from '../../src/config/preflight.js';

function config(production: boolean): RelayConfig {
  const out = parseConfig(
    ['--tls-cert', '/c.pem', '--tls-key', '/k.pem'],
    production ? { PYRYCODE_RELAY_PRODUCTION: '1' } : {},
    '/home/relay',
  );
  if (out.kind !== 'run') throw new Error(JSON.stringify(out));
  return out.config;
}

/** A realistic /proc/self/status with the given CapEff (other cap lines deliberately differ). */
function status(capEff: string): string {
  return [
    'Name:\tnode',
    'Umask:\t0022',
    'State:\tS (sleeping)',
    'Tgid:\t4242',
    'Pid:\t4242',
    'Uid:\t65532\t65532\t65532\t65532',
    'Gid:\t65532\t65532\t65532\t65532',
    'CapInh:\t0000000000000000',
    'CapPrm:\t000001ffffffffff',
    `CapEff:\t${capEff}`,
    'CapBnd:\t000001ffffffffff',
    'CapAmb:\t0000000000000000',
    'NoNewPrivs:\t0',
    'Seccomp:\t2',
    '',
  ].join('\n');
}

const linux = (euid: number | null, procStatus: string | null): ProcessFacts => ({
  euid,
  procStatus,
  platform: 'linux',
});

const CAPS_FIX =
  'drop every capability except CAP_NET_BIND_SERVICE (e.g. docker run --cap-drop=ALL --cap-add=NET_BIND_SERVICE, or systemd CapabilityBoundingSet=CAP_NET_BIND_SERVICE)';
const UNKNOWN_FIX = 'run with /proc mounted so the capability check can run';

describe('preflight outside production mode', () => {
  it.each<[string, ProcessFacts]>([
    ['root with every capability', linux(0, status('000001ffffffffff'))],
    ['unreadable status', linux(1000, null)],
    ['garbage status', linux(1000, 'garbage')],
    ['root on darwin', { euid: 0, procStatus: null, platform: 'darwin' }],
  ])('%s → null (development and CI machines run as root)', (_name, facts) => {
    expect(preflight(config(false), facts)).toBeNull();
  });
});

describe('preflight in production mode', () => {
  const prod = config(true);

  it('euid 0 is refused (before the capability check)', () => {
    expect(preflight(prod, linux(0, status('0000000000000000')))).toEqual({
      event: PREFLIGHT_EVENTS.root,
      fields: {
        effective_uid: 0,
        fix: 'run as an unprivileged user (e.g. uid 65532); grant CAP_NET_BIND_SERVICE if it must bind ports below 1024',
      },
    });
    expect(PREFLIGHT_EVENTS.root).toBe('refusing to start: running as root in production mode');
    expect(preflight(prod, { euid: 0, procStatus: null, platform: 'darwin' })?.event).toBe(PREFLIGHT_EVENTS.root);
  });

  it.each<[string, string]>([
    ['no capabilities', '0000000000000000'],
    ['only CAP_NET_BIND_SERVICE', '0000000000000400'],
    ['short hex', '400'],
    ['upper-case hex', '0000000000000400'.toUpperCase()],
  ])('%s → null', (_name, capEff) => {
    expect(preflight(prod, linux(65532, status(capEff)))).toBeNull();
  });

  it.each<[string, string, string]>([
    ['CAP_NET_RAW and CAP_SYS_ADMIN (sorted by bit)', '0000000000202000', 'CAP_NET_RAW,CAP_SYS_ADMIN'],
    ['same, with CAP_NET_BIND_SERVICE (allowed, not listed)', '0000000000202400', 'CAP_NET_RAW,CAP_SYS_ADMIN'],
    ['CAP_CHOWN', '0000000000000001', 'CAP_CHOWN'],
    ['CAP_CHECKPOINT_RESTORE', '0000010000000000', 'CAP_CHECKPOINT_RESTORE'],
    ['unknown bits', '8000020000000000', 'cap_41,cap_63'],
    [
      'docker default set',
      '00000000a80425fb',
      'CAP_CHOWN,CAP_DAC_OVERRIDE,CAP_FOWNER,CAP_FSETID,CAP_KILL,CAP_SETGID,CAP_SETUID,CAP_SETPCAP,CAP_NET_RAW,CAP_SYS_CHROOT,CAP_MKNOD,CAP_AUDIT_WRITE,CAP_SETFCAP',
    ],
  ])('%s → refused', (_name, capEff, value) => {
    expect(preflight(prod, linux(65532, status(capEff)))).toEqual({
      event: PREFLIGHT_EVENTS.capabilities,
      fields: { value, fix: CAPS_FIX },
    });
    expect(PREFLIGHT_EVENTS.capabilities).toBe('refusing to start: unexpected Linux capabilities');
  });

  it('a full root capability set lists every known capability except CAP_NET_BIND_SERVICE', () => {
    const out = preflight(prod, linux(65532, status('000001ffffffffff')));
    const names = String(out?.fields.value).split(',');
    expect(names).toHaveLength(40);
    expect(names).not.toContain('CAP_NET_BIND_SERVICE');
    expect(names[0]).toBe('CAP_CHOWN');
    expect(names[names.length - 1]).toBe('CAP_CHECKPOINT_RESTORE');
  });

  it.each<[string, string | null, string]>([
    ['status unreadable', null, 'cannot read /proc/self/status'],
    ['no CapEff line', 'Name:\tnode\nCapPrm:\t0000000000000000\n', 'no CapEff line in /proc/self/status'],
    ['empty status', '', 'no CapEff line in /proc/self/status'],
    ['CapEff not hex', status('zzzz'), 'CapEff in /proc/self/status is not a 64-bit hex mask'],
    ['CapEff empty', status(''), 'CapEff in /proc/self/status is not a 64-bit hex mask'],
    ['CapEff too long', status('00000000000000400'), 'CapEff in /proc/self/status is not a 64-bit hex mask'],
    ['CapEff with 0x prefix', status('0x400'), 'CapEff in /proc/self/status is not a 64-bit hex mask'],
    ['CapEff with trailing junk', status('0000000000000400 x'), 'CapEff in /proc/self/status is not a 64-bit hex mask'],
    [
      'two CapEff lines',
      status('0000000000000000') + 'CapEff:\t0000000000000400\n',
      'more than one CapEff line in /proc/self/status',
    ],
  ])('%s → refused (fail closed)', (_name, procStatus, reason) => {
    expect(preflight(prod, linux(65532, procStatus))).toEqual({
      event: PREFLIGHT_EVENTS.capabilitiesUnknown,
      fields: { reason, fix: UNKNOWN_FIX },
    });
  });

  it.each<NodeJS.Platform>(['darwin', 'freebsd', 'win32'])('%s: the capability check is skipped', (platform) => {
    expect(preflight(prod, { euid: 501, procStatus: null, platform })).toBeNull();
    expect(preflight(prod, { euid: null, procStatus: 'garbage', platform })).toBeNull();
  });

  it('every refusal uses only allowlisted log keys', () => {
    const outs = [
      preflight(prod, linux(0, null)),
      preflight(prod, linux(1, status('ffff'))),
      preflight(prod, linux(1, null)),
    ];
    for (const out of outs) {
      expect(out).not.toBeNull();
      for (const key of Object.keys(out!.fields)) expect(LOG_KEYS.has(key), key).toBe(true);
    }
  });
});

describe('helpers', () => {
  it('parseCapEff reads only the CapEff line', () => {
    expect(parseCapEff(status('0000000000000400'))).toEqual({ ok: true, mask: 0x400n });
    expect(parseCapEff('CapEff:  ffffffffffffffff\r\n')).toEqual({ ok: true, mask: (1n << 64n) - 1n });
  });

  it('capabilityNames', () => {
    expect(capabilityNames(0n)).toEqual([]);
    expect(capabilityNames(1n << 10n)).toEqual(['CAP_NET_BIND_SERVICE']);
    expect(capabilityNames((1n << 21n) | (1n << 13n) | (1n << 50n))).toEqual([
      'CAP_NET_RAW',
      'CAP_SYS_ADMIN',
      'cap_50',
    ]);
  });

  it('readProcessFacts describes this process', () => {
    const facts = readProcessFacts();
    expect(facts.platform).toBe(process.platform);
    if (typeof process.geteuid === 'function') expect(facts.euid).toBe(process.geteuid());
    if (process.platform === 'linux') {
      expect(facts.procStatus).toContain('CapEff:');
      expect(parseCapEff(facts.procStatus!).ok).toBe(true);
    } else {
      expect(facts.procStatus).toBeNull();
    }
  });
});
