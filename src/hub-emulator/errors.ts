import { randomUUID } from 'node:crypto';

/** IoT Hub's error codes, with the HTTP status and the numeric code the device protocol carries. */
export const errorCodes = {
  ArgumentInvalid: { status: 400, number: 400004 },
  BadRequest: { status: 400, number: 400004 },
  IotHubUnauthorizedAccess: { status: 401, number: 401003 },
  DeviceNotFound: { status: 404, number: 404001 },
  JobNotFound: { status: 404, number: 404002 },
  ConfigurationNotFound: { status: 404, number: 404001 },
  DeviceNotOnline: { status: 404, number: 404103 },
  NotFound: { status: 404, number: 404001 },
  MethodNotAllowed: { status: 405, number: 405001 },
  DeviceAlreadyExists: { status: 409, number: 409001 },
  JobAlreadyExists: { status: 409, number: 409001 },
  ConfigurationAlreadyExists: { status: 409, number: 409001 },
  PreconditionFailed: { status: 412, number: 412001 },
  RequestEntityTooLarge: { status: 413, number: 413001 },
  UnsupportedMediaType: { status: 415, number: 415001 },
  ThrottlingException: { status: 429, number: 429001 },
  ThrottlingMaxActiveJobCountExceeded: { status: 429, number: 429004 },
  GatewayTimeout: { status: 504, number: 504101 },
  ServerError: { status: 500, number: 500001 },
} as const;

export type ErrorCode = keyof typeof errorCodes;

/** An error to send back as IoT Hub would (HTTP status, `ErrorCode:X;message` body). */
export class HubError extends Error {
  override name = 'HubError';
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
  }
  get status(): number {
    return errorCodes[this.code].status;
  }
}

function trackingStamp(): string {
  return `Tracking ID:${randomUUID().replace(/-/g, '')} Timestamp:${new Date().toISOString()}`;
}

/** The REST body: the service SDK reads `Message` and takes the code after `ErrorCode:`. */
export function restErrorBody(err: HubError): string {
  return JSON.stringify({ Message: `ErrorCode:${err.code};${err.message}`, ExceptionMessage: trackingStamp() });
}

/** The device-protocol body: the device SDK treats any body with `errorCode` as a failure. */
export function deviceErrorBody(err: HubError): string {
  return JSON.stringify({
    errorCode: errorCodes[err.code].number,
    trackingId: randomUUID().replace(/-/g, ''),
    message: err.message,
    timestampUtc: new Date().toISOString(),
  });
}
