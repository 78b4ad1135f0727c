// The push environment: PYRYCODE_RELAY_FCM_CREDENTIALS (checked by parseConfig) and the endpoint
// overrides (parsePushEnv, read by main.ts after parseConfig).
//
// Secrets: PYRYCODE_RELAY_FCM_CREDENTIALS is never echoed. Its refusal carries only a fixed reason,
// and every parse of it runs inside a try/catch whose error is discarded (JSON.parse and
// createPrivateKey messages can quote the input).

import { createPrivateKey } from 'node:crypto';
import type { FcmServiceAccount } from '../push/fcm.js';
import { DEFAULT_FCM_ENDPOINT, DEFAULT_FCM_TOKEN_URI } from './defaults.js';
import { ENV_FCM_CREDENTIALS, ENV_FCM_ENDPOINT, ENV_FCM_TOKEN_URL } from './environment.js';

export const FCM_URL_REFUSAL_REASON =
  'not an absolute http:// or https:// URL without user info, query or fragment (value withheld)';
export const FCM_TOKEN_URI_REFUSAL_REASON =
  "the key's token_uri is not an absolute http:// or https:// URL without user info, query or fragment (value withheld)";
export const FCM_REFUSAL_REASON = 'not a service-account JSON key (value withheld)';

export function checkFcmCredentials(raw: string): FcmServiceAccount | null {
  try {
    const key: unknown = JSON.parse(raw);
    if (typeof key !== 'object' || key === null || Array.isArray(key)) return null;
    const k = key as Record<string, unknown>;
    if (k['type'] !== 'service_account') return null;
    const clientEmail = k['client_email'];
    if (typeof clientEmail !== 'string' || clientEmail === '') return null;
    const pem = k['private_key'];
    if (typeof pem !== 'string' || pem === '') return null;
    const priv = createPrivateKey({ key: pem, format: 'pem' });
    if (priv.asymmetricKeyType !== 'rsa') return null;
    const tokenUri =
      typeof k['token_uri'] === 'string' && k['token_uri'] !== '' ? k['token_uri'] : DEFAULT_FCM_TOKEN_URI;
    const projectId = typeof k['project_id'] === 'string' ? k['project_id'] : '';
    return { clientEmail, privateKeyPem: pem, tokenUri, projectId };
  } catch {
    // The error text may quote the value: drop it.
    return null;
  }
}

/** An absolute http(s) URL without user info, query or fragment, or null. */
function checkHttpUrl(s: string): URL | null {
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return null;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return null;
  if (u.hostname === '' || u.username !== '' || u.password !== '' || u.search !== '' || u.hash !== '') return null;
  if (s.includes('?') || s.includes('#')) return null; // an empty query or fragment
  return u;
}

export interface PushEndpoints {
  /** Base URL of the FCM API; the send path /v1/projects/pyrycode-mobile/messages:send is appended. */
  fcmEndpoint: string;
  /** Where the OAuth2 JWT assertion is posted. */
  tokenUrl: string;
}

export type PushEnvResult = { ok: true; endpoints: PushEndpoints } | { ok: false; env_var: string; reason: string };

/**
 * PYRYCODE_RELAY_FCM_ENDPOINT (default https://fcm.googleapis.com) and PYRYCODE_RELAY_FCM_TOKEN_URL
 * (default: the key's token_uri, else https://oauth2.googleapis.com/token), checked whether or
 * not push is on. Each must be an absolute http:// or https:// URL without user info, query or
 * fragment; a refusal never echoes the value. With credentials and no override, the key's
 * token_uri must pass the same check. Read by main.ts after parseConfig (RelayConfig is unchanged).
 */
export function parsePushEnv(
  env: Record<string, string | undefined>,
  credentials: FcmServiceAccount | null,
): PushEnvResult {
  const refuse = (env_var: string, reason = FCM_URL_REFUSAL_REASON): PushEnvResult => ({ ok: false, env_var, reason });
  const endpoint = env[ENV_FCM_ENDPOINT];
  if (endpoint !== undefined && checkHttpUrl(endpoint) === null) return refuse(ENV_FCM_ENDPOINT);
  const tokenUrl = env[ENV_FCM_TOKEN_URL];
  if (tokenUrl !== undefined && checkHttpUrl(tokenUrl) === null) return refuse(ENV_FCM_TOKEN_URL);
  const effectiveTokenUrl = tokenUrl ?? credentials?.tokenUri ?? DEFAULT_FCM_TOKEN_URI;
  if (checkHttpUrl(effectiveTokenUrl) === null) return refuse(ENV_FCM_CREDENTIALS, FCM_TOKEN_URI_REFUSAL_REASON);
  return { ok: true, endpoints: { fcmEndpoint: endpoint ?? DEFAULT_FCM_ENDPOINT, tokenUrl: effectiveTokenUrl } };
}
