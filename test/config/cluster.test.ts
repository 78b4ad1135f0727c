// Cluster mode's flags and environment (src/config/cluster.ts): accepted values, and exit-2
// refusals with a one-line reason that never echoes a credential.

import { describe, expect, it } from 'vitest';
import { parseConfig } from '../../src/config/parse.js';

const INSECURE = ['--insecure-listen', '127.0.0.1:8080'];

function run(argv: string[], env: Record<string, string> = {}) {
  const out = parseConfig(argv, env, '/home/relay');
  if (out.kind !== 'run') throw new Error(`expected run, got ${JSON.stringify(out)}`);
  return out.config;
}

function refuse(argv: string[], env: Record<string, string> = {}) {
  const out = parseConfig(argv, env, '/home/relay');
  if (out.kind !== 'refuse') throw new Error(`expected refuse, got ${JSON.stringify(out)}`);
  return out;
}

describe('cluster flags', () => {
  it('without --cluster: cluster is null', () => {
    expect(run(INSECURE).cluster).toBeNull();
  });

  it('--cluster with several URLs, --instance-id, --cluster-lease; credentials from the environment', () => {
    const config = run(
      [
        ...INSECURE,
        '--cluster',
        'nats://10.0.0.1:4222,tls://nats.example:4443',
        '--instance-id',
        'relay-a',
        '--cluster-lease',
        '20s',
      ],
      { PYRYCODE_RELAY_CLUSTER_USER: 'relay', PYRYCODE_RELAY_CLUSTER_PASSWORD: 's3cret' },
    );
    expect(config.cluster).toEqual({
      servers: ['nats://10.0.0.1:4222', 'tls://nats.example:4443'],
      instanceId: 'relay-a',
      leaseMs: 20_000,
      user: 'relay',
      pass: 's3cret',
      tls: {},
    });
  });

  it('PYRYCODE_RELAY_CLUSTER_URL works like --cluster; the default lease is 15s and the id is left to main', () => {
    const config = run(INSECURE, { PYRYCODE_RELAY_CLUSTER_URL: 'nats://127.0.0.1:4222' });
    expect(config.cluster).toEqual({
      servers: ['nats://127.0.0.1:4222'],
      instanceId: null,
      leaseMs: 15_000,
      tls: null,
    });
  });

  it('--cluster satisfies the single-instance acknowledgement on Fly', () => {
    expect(run([...INSECURE, '--cluster', 'nats://127.0.0.1:4222'], { FLY_APP_NAME: 'relay' }).cluster).not.toBeNull();
    expect(refuse(INSECURE, { FLY_APP_NAME: 'relay' }).event).toBe('refusing to start: multi-instance deploy detected');
  });

  it.each([
    ['http://127.0.0.1:4222', 'scheme must be nats:// or tls://'],
    ['nats://127.0.0.1', 'port is missing (NATS listens on 4222 by default: write it)'],
    ['nats://127.0.0.1:4222/x', 'a path, query or fragment is not allowed'],
    ['not a url', 'not a URL (expected nats://HOST:PORT)'],
    ['nats://127.0.0.1:4222/?token=S3CRET', 'a path, query or fragment is not allowed'],
  ])('--cluster %s is refused: %s (the value withheld: it may carry a credential)', (value, reason) => {
    const out = refuse([...INSECURE, '--cluster', value]);
    expect(out.event).toBe('refusing to start: invalid flag value');
    expect(out.fields).toMatchObject({ flag: '--cluster', value: '(withheld)', reason });
    expect(JSON.stringify(out)).not.toContain('S3CRET');
  });

  it('credentials in the URL are refused and never echoed', () => {
    const out = refuse([...INSECURE, '--cluster', 'nats://relay:hunter2@127.0.0.1:4222']);
    expect(out.fields).toMatchObject({
      flag: '--cluster',
      value: '(withheld)',
      reason: 'credentials in the URL are refused (they would show in process lists and logs)',
    });
    expect(JSON.stringify(out)).not.toContain('hunter2');
  });

  it('bad --instance-id and too short --cluster-lease are refused', () => {
    expect(refuse([...INSECURE, '--cluster', 'nats://h:1', '--instance-id', 'a b']).fields).toMatchObject({
      flag: '--instance-id',
      reason: 'must be 1 to 64 characters from A-Z, a-z, 0-9, _ and -',
    });
    expect(refuse([...INSECURE, '--cluster', 'nats://h:1', '--cluster-lease', '100ms']).fields).toMatchObject({
      flag: '--cluster-lease',
      reason: 'must be at least 300ms',
    });
  });

  it('cluster-only flags and credentials without --cluster, half credentials and two methods are refused', () => {
    expect(refuse([...INSECURE, '--instance-id', 'a']).fields).toEqual({
      reason: '--instance-id applies only with --cluster',
    });
    const noCluster = refuse(INSECURE, { PYRYCODE_RELAY_CLUSTER_TOKEN: 'tok' });
    expect(noCluster.fields).toEqual({
      env_var: 'PYRYCODE_RELAY_CLUSTER_TOKEN',
      reason: 'applies only with --cluster',
    });
    const half = refuse([...INSECURE, '--cluster', 'nats://h:1'], { PYRYCODE_RELAY_CLUSTER_USER: 'u' });
    expect(half.fields).toMatchObject({ env_var: 'PYRYCODE_RELAY_CLUSTER_PASSWORD' });
    const two = refuse([...INSECURE, '--cluster', 'nats://h:1', '--cluster-creds', '/x.creds'], {
      PYRYCODE_RELAY_CLUSTER_TOKEN: 'tok',
    });
    expect(two.fields).toEqual({
      reason: 'choose one NATS authentication: user and password, token, or --cluster-creds',
    });
    expect(JSON.stringify(two)).not.toContain('tok"');
  });
});
