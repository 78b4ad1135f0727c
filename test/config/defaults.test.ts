// One source for every default: src/config/defaults.ts. The flag table renders its defaults from
// it and in-process relays (tests, the bench) start from DEFAULT_RELAY_OPTIONS; this test ties the
// source to what the parser actually produces, so a default cannot drift between them. A command
// line must name a listener mode (an empty one is refused), so each case passes only that.

import { describe, expect, it } from 'vitest';
import { DEFAULT_RELAY_OPTIONS, DEFAULTS } from '../../src/config/defaults.js';
import { parseConfig } from '../../src/config/parse.js';
import { REFUSAL_EVENTS } from '../../src/config/refusals.js';
import type { RelayConfig } from '../../src/config/types.js';

function parsed(argv: string[]): RelayConfig {
  const out = parseConfig(argv, {}, '/home/relay');
  if (out.kind !== 'run') throw new Error(`expected run, got ${JSON.stringify(out)}`);
  return out.config;
}

const MODES: Record<string, string[]> = {
  insecure: ['--insecure-listen', ':8080'],
  tls: ['--tls-cert', 'cert.pem', '--tls-key', 'key.pem'],
  autocert: ['--domain', 'relay.example.com'],
};

describe('defaults', () => {
  it('an empty command line is refused: it names no listener mode', () => {
    const out = parseConfig([], {}, '/home/relay');
    expect(out.kind === 'refuse' && out.event).toBe(REFUSAL_EVENTS.noMode);
  });

  for (const [mode, argv] of Object.entries(MODES)) {
    it(`a command line with only the ${mode} mode parses to exactly DEFAULTS`, () => {
      const config = parsed(argv);
      const picked = Object.fromEntries(Object.keys(DEFAULTS).map((key) => [key, config[key as keyof RelayConfig]]));
      expect(picked).toEqual(DEFAULTS);
    });
  }

  it('DEFAULT_RELAY_OPTIONS holds the parsed defaults of every relay option it names', () => {
    const config = parsed(MODES.insecure!);
    for (const [key, value] of Object.entries(DEFAULT_RELAY_OPTIONS)) {
      expect(config[key as keyof RelayConfig], key).toEqual(value);
    }
    expect(Object.keys(DEFAULT_RELAY_OPTIONS).sort()).toEqual([
      'gracePeriodMs',
      'heartbeatIntervalMs',
      'maxConnections',
      'maxPhonesPerServer',
      'probeTimeoutMs',
      'rateLimitBurst',
      'rateLimitIntervalMs',
      'trustXForwardedFor',
    ]);
  });
});
