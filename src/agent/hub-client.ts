import deviceSdk from 'azure-iot-device';
import mqttTransport from 'azure-iot-device-mqtt';
import type { TransportConfig } from 'azure-iot-common';
import type { MqttBaseTransportConfig } from 'azure-iot-mqtt-base';
import { DownloadAgent } from '../download/download-agent.js';
import type { ProxySetting } from '../download/proxy.js';

/**
 * The daemon's port to IoT Hub: the few calls HubLink makes on a device client. The real one is the
 * device SDK (sdkClientFactory); tests of HubLink's retries give a fake. A client is used for one
 * connection attempt and its drops; HubLink builds a new one for each retry.
 */
export interface HubClient {
  /** Registers a direct-method handler; `respond` sends the answer. Call before open(): open() enables it once connected. */
  onMethod(name: string, call: (payload: unknown, respond: (status: number, payload: unknown) => Promise<void>) => void): void;
  /** The connection dropped after open() succeeded. */
  onDisconnect(listener: () => void): void;
  /**
   * Errors the client reports outside any call: the SDK's way of saying that a feature (direct
   * methods, desired-property updates) could not be enabled, so the connection is up but deaf to it.
   */
  onError(listener: (err: Error) => void): void;
  open(): Promise<void>;
  getTwin(): Promise<HubTwin>;
  /** Stops the client's events and closes its connection; may never settle on a dead network. */
  close(): Promise<void>;
}

export interface HubTwin {
  /** Resolves once the hub acknowledged the patch. */
  updateReported(patch: Record<string, unknown>): Promise<void>;
  /** Calls `listener` with the whole desired document: soon after it is set, and after every desired patch. */
  onDesired?(listener: (desired: Record<string, unknown>) => void): void;
}

export type HubClientFactory = () => HubClient;

/** `mqtt`: MQTT over TLS (IoT Hub's port 8883). `mqtt-ws`: MQTT over WebSockets (port 443), through a proxy if one applies. */
export type HubTransport = 'mqtt' | 'mqtt-ws';

export interface SdkClientSettings {
  connectionString: string;
  /** PEM of a private CA to trust (the emulator's), or undefined for the public roots. */
  ca?: string;
  transport: HubTransport;
  /** For mqtt-ws: an http:// proxy URL, null for none, undefined for HTTPS_PROXY / NO_PROXY. */
  proxy?: ProxySetting;
  /** How long a proxy may take to open its tunnel. */
  tunnelTimeoutMs?: number;
}

/**
 * The SDK's MqttWs always dials port 443 and would turn `HostName=host:port` into a broken URL.
 * This one keeps a port given in HostName (an emulator's HTTPS port); without one it is MqttWs.
 */
class MqttWsKeepingPort extends mqttTransport.MqttWs {
  protected override _getBaseTransportConfig(credentials: TransportConfig): MqttBaseTransportConfig {
    const config = super._getBaseTransportConfig(credentials);
    const host = credentials.gatewayHostName || credentials.host;
    if (/:\d+$/.test(host)) config.uri = `wss://${host}/$iothub/websocket`;
    return config;
  }
}

/** Builds device-SDK clients for the connection string over the chosen transport. */
export function sdkClientFactory(settings: SdkClientSettings): HubClientFactory {
  return () => {
    const ws = settings.transport === 'mqtt-ws';
    const sdk = deviceSdk.Client.fromConnectionString(settings.connectionString, ws ? MqttWsKeepingPort : mqttTransport.Mqtt);
    // The WebSocket's connection is made by this agent: directly, or through an HTTP CONNECT
    // tunnel with TLS to the hub end to end (the proxy sees only the host name and port).
    const webSocketAgent = ws ? new DownloadAgent({ extraCa: settings.ca, proxy: settings.proxy, connectTimeoutMs: settings.tunnelTimeoutMs ?? 30_000 }) : undefined;
    const options = { ...(settings.ca ? { ca: settings.ca } : {}), ...(webSocketAgent ? { mqtt: { webSocketAgent } } : {}) };
    let configured: Promise<unknown> | undefined;
    const errorListeners: ((err: Error) => void)[] = [];
    const methods = new Map<string, Parameters<HubClient['onMethod']>[1]>();
    return {
      onMethod: (name, call) => void methods.set(name, call),
      onDisconnect: (listener) => void sdk.on('disconnect', listener),
      onError: (listener) => {
        errorListeners.push(listener);
        sdk.on('error', listener);
      },
      open: async () => {
        if (Object.keys(options).length > 0) await (configured ??= sdk.setOptions(options));
        await sdk.open();
        // Only now: the SDK enables a method as soon as its handler is registered, and on a client
        // not yet open it connects by itself, before the options above (the CA, the WebSocket agent)
        // are set, so that connection fails and the SDK reports it as an 'error', which HubLink
        // takes for a lost feature.
        for (const [name, call] of methods) {
          sdk.onDeviceMethod(name, (request, response) => call(request.payload, (status, payload) => response.send(status, payload)));
        }
      },
      getTwin: async () => {
        const twin = await sdk.getTwin();
        // The twin emits 'error' when desired-property updates cannot be enabled: an EventEmitter
        // 'error' without a listener would throw out of the SDK's callback and end the process.
        twin.on('error', (err: Error) => errorListeners.forEach((listener) => listener(err)));
        const reported = twin.properties.reported as unknown as { update(patch: unknown, done: (err?: Error) => void): void };
        return {
          updateReported: (patch) => new Promise<void>((ok, fail) => reported.update(patch, (err) => (err ? fail(err) : ok()))),
          // The SDK merges each patch into properties.desired; the listener gets the merged document.
          onDesired: (listener) => void twin.on('properties.desired', () => listener(structuredClone(twin.properties.desired) as Record<string, unknown>)),
        };
      },
      close: async () => {
        sdk.removeAllListeners();
        sdk.on('error', () => undefined); // a late transport error must not become an uncaught one
        await sdk.close();
      },
    };
  };
}
