import { serviceClient, serviceRegistry, type HubTarget } from './hub-connection.js';
import { DeviceUnreachableError, type HubService, type MethodResult } from './follow-update.js';

/** The hub could not be reached or refused our credentials (exit 2 in trigger). */
export class HubConnectionError extends Error {
  override name = 'HubConnectionError';
}

interface SdkError extends Error {
  response?: { statusCode?: number };
  responseBody?: string;
  statusCode?: number;
}

/** HubService over the real azure-iothub SDK (REST): invokeDeviceMethod and getTwin. */
export function iothubService(target: HubTarget): HubService {
  const client = serviceClient(target);
  const registry = serviceRegistry(target);
  return {
    async invokeMethod(deviceId, methodName, payload, responseTimeoutInSeconds): Promise<MethodResult> {
      try {
        const { result } = await client.invokeDeviceMethod(deviceId, { methodName, payload, responseTimeoutInSeconds, connectTimeoutInSeconds: 0 });
        return { status: (result as MethodResult).status, payload: (result as MethodResult).payload };
      } catch (err) {
        throw classify(err as SdkError, deviceId);
      }
    },
    async reportedProperties(deviceId) {
      try {
        const { responseBody } = await registry.getTwin(deviceId);
        return (responseBody.properties?.reported ?? {}) as Record<string, unknown>;
      } catch (err) {
        throw classify(err as SdkError, deviceId);
      }
    },
  };
}

function classify(err: SdkError, deviceId: string): Error {
  const status = err.response?.statusCode ?? err.statusCode;
  const body = err.responseBody ?? '';
  const code = /ErrorCode:(\w+)/.exec(body)?.[1] ?? err.name;
  if (/DeviceNotOnline/.test(code) || /DeviceNotOnline/.test(body)) return new DeviceUnreachableError(`device '${deviceId}' is not connected to the hub`);
  if (/DeviceNotFound/.test(code) || /DeviceNotFound/.test(body)) return new DeviceUnreachableError(`device '${deviceId}' is not registered in the hub`);
  if (status === 404) return new DeviceUnreachableError(`device '${deviceId}' is not connected or not registered (HTTP 404)`);
  if (status === 504 || /GatewayTimeout|Timeout/.test(code)) return new DeviceUnreachableError(`device '${deviceId}' did not answer in time (HTTP 504)`);
  if (status === 401 || status === 403 || /Unauthorized/.test(code)) return new HubConnectionError(`the hub refused the service credentials (${code})`);
  return new HubConnectionError(`cannot reach the hub: ${err.message}${status ? ` (HTTP ${status})` : ''}`);
}
