// The names of the environment variables the daemon reads itself (docs/operations.md, "Environment variables"). Names
// only: their checks live where they are read (parse.ts, push-env.ts).

export const ENV_PRODUCTION = 'PYRYCODE_RELAY_PRODUCTION';
export const ENV_SINGLE_INSTANCE = 'PYRYCODE_RELAY_SINGLE_INSTANCE';
export const ENV_FCM_CREDENTIALS = 'PYRYCODE_RELAY_FCM_CREDENTIALS';
export const ENV_FLY_APP_NAME = 'FLY_APP_NAME';
export const ENV_FCM_ENDPOINT = 'PYRYCODE_RELAY_FCM_ENDPOINT';
export const ENV_FCM_TOKEN_URL = 'PYRYCODE_RELAY_FCM_TOKEN_URL';
export const ENV_CLUSTER_URL = 'PYRYCODE_RELAY_CLUSTER_URL';
export const ENV_CLUSTER_USER = 'PYRYCODE_RELAY_CLUSTER_USER';
export const ENV_CLUSTER_PASSWORD = 'PYRYCODE_RELAY_CLUSTER_PASSWORD';
export const ENV_CLUSTER_TOKEN = 'PYRYCODE_RELAY_CLUSTER_TOKEN';
