import { readFileSync } from 'node:fs';
import { Agent } from 'node:https';
import iothub from 'azure-iothub';
// azure-iothub carries its own copy of the RestApiClient; Registry and Client type-check against that one.
import { RestApiClient } from 'azure-iothub/dist/common-http/rest_api_client.js';
import type { Client as ServiceClient, JobClient as ServiceJobClient, Registry as ServiceRegistry } from 'azure-iothub';

const { Registry, Client, JobClient, Amqp, ConnectionString, SharedAccessSignature } = iothub;

/** A hub to reach: the emulator's hub.json, or a connection string (a real hub, port 443). */
export type HubTarget =
  | { serviceConnectionString: string; caFile: string; httpsPort: number }
  | { connectionString: string; caFile?: string; httpsPort?: number };

interface ResolvedTarget {
  connectionString: string;
  ca?: string;
  port: number;
}

function resolveTarget(target: HubTarget): ResolvedTarget {
  if ('serviceConnectionString' in target) {
    return { connectionString: target.serviceConnectionString, ca: readFileSync(target.caFile, 'utf8'), port: target.httpsPort };
  }
  return { connectionString: target.connectionString, ca: target.caFile ? readFileSync(target.caFile, 'utf8') : undefined, port: target.httpsPort ?? 443 };
}

function restConfig(connectionString: string) {
  const cn = ConnectionString.parse(connectionString);
  const host = cn.HostName as string;
  const keyName = cn.SharedAccessKeyName as string;
  if (!host || !keyName || !cn.SharedAccessKey) {
    throw new Error('the service connection string needs HostName, SharedAccessKeyName and SharedAccessKey');
  }
  if (/:\d+$/.test(host)) {
    // The service SDK would take "host:port" as a DNS name; the port belongs in hub.json's httpsPort.
    throw new Error(`the service connection string's HostName must not carry a port ('${host}')`);
  }
  return {
    host,
    keyName,
    // An object, not a string: the RestApiClient extends it to a fresh expiry on every call.
    sharedAccessSignature: SharedAccessSignature.create(host, keyName, cn.SharedAccessKey as string, Math.ceil(Date.now() / 1000) + 3600),
  };
}

/**
 * The SDK cannot take a port or a CA: it keeps its RestApiClient, whose https agent we replace
 * (after the constructor, which installs its own) with one that knows both.
 */
function pointAt(rac: InstanceType<typeof RestApiClient>, target: ResolvedTarget): void {
  if (target.port === 443 && !target.ca) return;
  const agent = new Agent({ keepAlive: true, ca: target.ca });
  // https.Agent's constructor sets defaultPort to 443 whatever the options say: set it afterwards.
  (agent as Agent & { defaultPort: number }).defaultPort = target.port;
  rac.setOptions({ http: { agent } });
}

/** An azure-iothub Registry (devices, twins, query) that reaches the emulator's port and trusts its CA. */
export function serviceRegistry(target: HubTarget): ServiceRegistry {
  const resolved = resolveTarget(target);
  const config = restConfig(resolved.connectionString);
  const rac = new RestApiClient(config, 'piota-service');
  const registry = new Registry(config, rac);
  pointAt(rac, resolved);
  return registry;
}

/** An azure-iothub Client whose invokeDeviceMethod reaches the emulator's port and trusts its CA. */
export function serviceClient(target: HubTarget): ServiceClient {
  const resolved = resolveTarget(target);
  const config = restConfig(resolved.connectionString);
  const rac = new RestApiClient(config, 'piota-service');
  // Direct methods go over REST; the AMQP transport (for cloud-to-device messages) is never opened.
  const client = new Client(new Amqp(config), rac);
  pointAt(rac, resolved);
  return client;
}

/**
 * An azure-iothub JobClient (scheduleDeviceMethod, getJob, cancelJob) that reaches the emulator's
 * port and trusts its CA. Its constructor resets the RestApiClient's agent to a plain one (port
 * 443, system CAs), so the hub is pointed at after it.
 */
export function serviceJobClient(target: HubTarget): ServiceJobClient {
  const resolved = resolveTarget(target);
  const config = restConfig(resolved.connectionString);
  const rac = new RestApiClient(config, 'piota-service');
  const jobs = new JobClient(rac as unknown as ConstructorParameters<typeof JobClient>[0]);
  pointAt(rac, resolved);
  return jobs;
}
