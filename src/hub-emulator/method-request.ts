import { HubError } from './errors.js';
import { METHOD_PAYLOAD_LIMIT, type MethodRequest } from './hub-core.js';
import { isObject, type Json } from './twin.js';

export function wholeSeconds(value: Json | undefined, name: string, fallback: number, min: number, max: number): number {
  if (value === undefined || value === null) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new HubError('ArgumentInvalid', `${name} must be a whole number of seconds from ${min} to ${max}`);
  }
  return value;
}

/**
 * A direct-method call as the REST API takes it (`POST /twins/{id}/methods`, a job's
 * `cloudToDeviceMethod`), checked as IoT Hub checks it. `where` prefixes the names in errors.
 */
export function parseMethodRequest(body: Json | undefined, where: string): MethodRequest & { payloadBytes: number } {
  if (!isObject(body)) throw new HubError('ArgumentInvalid', `${where}: expected an object with a methodName`);
  const { methodName } = body;
  if (typeof methodName !== 'string' || !/^[^/#+\s?]{1,128}$/.test(methodName)) {
    throw new HubError('ArgumentInvalid', 'methodName must be a non-empty name of at most 128 characters without /, #, +, ? or spaces');
  }
  const payload = body.payload === undefined ? null : body.payload;
  const payloadBytes = Buffer.byteLength(JSON.stringify(payload));
  if (payloadBytes > METHOD_PAYLOAD_LIMIT) {
    throw new HubError('RequestEntityTooLarge', `method payload is ${payloadBytes} bytes, over IoT Hub's limit of ${METHOD_PAYLOAD_LIMIT}`);
  }
  return {
    methodName,
    payload,
    // Older REST clients name the response timeout timeoutInSeconds.
    responseTimeoutInSeconds: wholeSeconds(body.responseTimeoutInSeconds ?? body.timeoutInSeconds, 'responseTimeoutInSeconds', 30, 5, 300),
    connectTimeoutInSeconds: wholeSeconds(body.connectTimeoutInSeconds, 'connectTimeoutInSeconds', 0, 0, 300),
    payloadBytes,
  };
}
