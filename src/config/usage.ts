// The --help text, written from the flag table and the environment names so it cannot miss a flag.

import { formatDuration, parseDuration } from '../duration.js';
import { DEFAULT_FCM_ENDPOINT } from './defaults.js';
import {
  ENV_CLUSTER_PASSWORD,
  ENV_CLUSTER_TOKEN,
  ENV_CLUSTER_URL,
  ENV_CLUSTER_USER,
  ENV_FCM_CREDENTIALS,
  ENV_FCM_ENDPOINT,
  ENV_FCM_TOKEN_URL,
  ENV_PRODUCTION,
  ENV_SINGLE_INSTANCE,
} from './environment.js';
import { FLAG_SPECS } from './flags.js';

/** Help text: every flag with its default and a one-line meaning, then the env vars. */
export function usage(): string {
  const rows = FLAG_SPECS.map((f) => {
    const left = `  --${f.name}${f.arg === '' ? '' : ' ' + f.arg}`;
    let def: string;
    if (f.defShown !== undefined) def = f.defShown;
    else if (f.kind === 'duration') def = formatDuration(parseDuration(f.def)!);
    else if (f.kind === 'bool' || f.kind === 'int') def = f.def;
    else def = JSON.stringify(f.def);
    const suffix = f.name === 'version' ? '' : ` (default ${def})`;
    return { left, right: f.help + suffix };
  });
  const width = Math.max(...rows.map((r) => r.left.length)) + 2;
  const envRows = [
    {
      left: `  ${ENV_PRODUCTION}=1`,
      right: 'production mode: refuses --insecure-listen, root, extra Linux capabilities',
    },
    { left: `  ${ENV_SINGLE_INSTANCE}=1`, right: 'acknowledges a single-instance deploy where FLY_APP_NAME is set' },
    { left: `  ${ENV_FCM_CREDENTIALS}`, right: 'Google service-account JSON key (the content); enables push wakes' },
    { left: `  ${ENV_FCM_ENDPOINT}`, right: `FCM API base URL for push wakes (default ${DEFAULT_FCM_ENDPOINT})` },
    { left: `  ${ENV_FCM_TOKEN_URL}`, right: "OAuth2 token URL for push wakes (default: the key's token_uri)" },
    { left: `  ${ENV_CLUSTER_URL}`, right: 'cluster mode: NATS URLs when --cluster is not given' },
    { left: `  ${ENV_CLUSTER_USER}, ${ENV_CLUSTER_PASSWORD}`, right: 'cluster mode: NATS user and password' },
    { left: `  ${ENV_CLUSTER_TOKEN}`, right: 'cluster mode: NATS token' },
  ];
  const envWidth = Math.max(...envRows.map((r) => r.left.length)) + 2;
  const lines = [
    'Usage: pyrycode-relay [flags]',
    '',
    'Content-blind WebSocket relay between a pyry binary and its phones.',
    'Exactly one listener mode is required: --insecure-listen ADDR, --tls-cert FILE with',
    "--tls-key FILE, or --domain D (TLS with a certificate from an ACME CA such as Let's Encrypt).",
    '',
    'Flags (-name or --name; values as --name=value or --name value; booleans as --name or',
    '--name=true|false; durations in Go syntax such as 250ms, 30s, 1m30s, from 1ms to 24h,',
    'and --drain-delay also takes 0):',
    ...rows.map((r) => r.left.padEnd(width) + r.right),
    '  -h, --help'.padEnd(width) + 'print this help and exit',
    '',
    'Environment:',
    ...envRows.map((r) => r.left.padEnd(envWidth) + r.right),
    '',
    'Exit status: 0 after --help, --version or a signal-triggered shutdown; 1 on a listener error;',
    '2 on a refused configuration.',
    '',
  ];
  return lines.join('\n');
}
