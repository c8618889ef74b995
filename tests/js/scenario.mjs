/**
 * The centrifuge-js scenario driver, one module for both places it runs: under Node
 * (client.mjs, which reads commands from stdin) and in headless Chromium (browser_client.html,
 * whose commands come through the page). It imports nothing: the caller hands it the SDK's
 * Centrifuge class, an `emit(event, fields)` function and the environment's extras.
 *
 * The scenario's fields and the commands are described in client.mjs; every SDK event and
 * every command's result is emitted as {"event": name, ...fields}.
 */

const textEncoder = new TextEncoder();
const strictDecoder = new TextDecoder('utf-8', { fatal: true });

function toBase64(bytes) {
  let text = '';
  for (const byte of bytes) text += String.fromCharCode(byte);
  return btoa(text);
}

function fromBase64(b64) {
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

export function errorFields(err) {
  if (err && typeof err === 'object' && 'code' in err) {
    return { code: err.code, message: err.message ?? '' };
  }
  return { code: -1, message: String(err) };
}

/**
 * A client for `scenario`, subscribed to its channel (if any) and connecting.
 *   Centrifuge: the SDK's class (JSON build, or the Protobuf build when scenario.protobuf)
 *   emit(event, fields): where events go
 *   options: extra Centrifuge options of the environment (Node: websocket, eventsource)
 * Returns {client, run(command)}: `run` executes one command and emits its result event.
 */
export function startScenario({ Centrifuge, scenario, emit, options: extra = {} }) {
  const protobuf = Boolean(scenario.protobuf);

  /** Outgoing payload: the Protobuf build sends bytes (our JSON's, or `b64`'s exactly). */
  function outgoing(data, b64) {
    if (protobuf && b64 !== undefined) return fromBase64(b64);
    return protobuf ? textEncoder.encode(JSON.stringify(data)) : data;
  }

  /** Incoming payload: the Protobuf build hands bytes (JSON here), shown decoded;
   *  bytes that are not JSON show as null (their exact bytes are in `b64` fields). */
  function incoming(data) {
    if (protobuf && data instanceof Uint8Array) {
      if (!data.length) return null;
      try {
        return JSON.parse(strictDecoder.decode(data));
      } catch {
        return null;
      }
    }
    return data;
  }

  /** The exact bytes of a Protobuf payload as base64 (undefined for JSON). */
  function rawBytes(data) {
    return protobuf && data instanceof Uint8Array ? toBase64(data) : undefined;
  }

  function clientInfo(info) {
    if (!info) return null;
    return {
      client: info.client,
      user: info.user,
      connInfo: incoming(info.connInfo) ?? null,
      chanInfo: incoming(info.chanInfo) ?? null,
    };
  }

  function publicationFields(ctx) {
    return {
      channel: ctx.channel,
      data: incoming(ctx.data),
      b64: rawBytes(ctx.data),
      offset: ctx.offset ?? null,
      info: clientInfo(ctx.info),
      tags: ctx.tags ?? null,
    };
  }

  function createClient() {
    const options = { name: scenario.name ?? 'js', ...extra };
    if (scenario.emulationEndpoint) options.emulationEndpoint = scenario.emulationEndpoint;
    if (scenario.data !== undefined) options.data = outgoing(scenario.data);
    if (scenario.token) options.token = scenario.token;
    if (scenario.tokenUrl) {
      options.getToken = async () => {
        const token = await (await fetch(scenario.tokenUrl)).text();
        emit('token', { kind: 'connection' });
        return token;
      };
    }
    if (scenario.minReconnectDelay !== undefined) options.minReconnectDelay = scenario.minReconnectDelay;
    if (scenario.maxReconnectDelay !== undefined) options.maxReconnectDelay = scenario.maxReconnectDelay;
    const client = new Centrifuge(scenario.transports ?? scenario.url, options);
    client.on('connecting', (ctx) => emit('connecting', { code: ctx.code, reason: ctx.reason }));
    client.on('connected', (ctx) =>
      emit('connected', { client: ctx.client, transport: ctx.transport, data: incoming(ctx.data) ?? null }),
    );
    client.on('disconnected', (ctx) => emit('disconnected', { code: ctx.code, reason: ctx.reason }));
    client.on('error', (ctx) => emit('error', { type: ctx.type, error: errorFields(ctx.error) }));
    client.on('publication', (ctx) => emit('server_publication', publicationFields(ctx)));
    return client;
  }

  function createSubscription(client, channel) {
    const options = {};
    if (scenario.minResubscribeDelay !== undefined) options.minResubscribeDelay = scenario.minResubscribeDelay;
    if (scenario.maxResubscribeDelay !== undefined) options.maxResubscribeDelay = scenario.maxResubscribeDelay;
    if (scenario.delta) options.delta = scenario.delta;
    if (scenario.subTokenUrl) {
      options.getToken = async (ctx) => {
        const url = `${scenario.subTokenUrl}?channel=${encodeURIComponent(ctx.channel)}`;
        const token = await (await fetch(url)).text();
        emit('token', { kind: 'subscription', channel: ctx.channel });
        return token;
      };
    }
    const sub = client.newSubscription(channel, options);
    sub.on('subscribing', (ctx) =>
      emit('subscribing', { channel: ctx.channel, code: ctx.code, reason: ctx.reason }),
    );
    sub.on('subscribed', (ctx) =>
      emit('subscribed', {
        channel: ctx.channel,
        recoverable: ctx.recoverable,
        positioned: ctx.positioned,
        wasRecovering: ctx.wasRecovering,
        recovered: ctx.recovered,
        streamPosition: ctx.streamPosition ?? null,
      }),
    );
    sub.on('unsubscribed', (ctx) =>
      emit('unsubscribed', { channel: ctx.channel, code: ctx.code, reason: ctx.reason }),
    );
    sub.on('publication', (ctx) => emit('publication', publicationFields(ctx)));
    sub.on('join', (ctx) => emit('join', { channel: ctx.channel, info: clientInfo(ctx.info) }));
    sub.on('leave', (ctx) => emit('leave', { channel: ctx.channel, info: clientInfo(ctx.info) }));
    sub.on('error', (ctx) =>
      emit('sub_error', { channel: ctx.channel, type: ctx.type, error: errorFields(ctx.error) }),
    );
    return sub;
  }

  /** Runs one command; resolves with the fields of its result event. */
  async function execute(client, command) {
    const channel = command.channel ?? scenario.channel;
    const sub = channel ? client.getSubscription(channel) : null;
    const target = sub ?? client;
    const withChannel = sub ? [] : [channel];
    switch (command.cmd) {
      case 'publish':
        await target.publish(...withChannel, outgoing(command.data, command.b64));
        return {};
      case 'presence': {
        const result = await target.presence(...withChannel);
        const clients = {};
        for (const [id, info] of Object.entries(result.clients)) clients[id] = clientInfo(info);
        return { clients };
      }
      case 'presence_stats': {
        const result = await target.presenceStats(...withChannel);
        return { numClients: result.numClients, numUsers: result.numUsers };
      }
      case 'history': {
        const options = { limit: command.limit ?? 0 };
        if (command.reverse) options.reverse = true;
        const result = await target.history(...withChannel, options);
        return {
          publications: result.publications.map(publicationFields),
          offset: result.offset,
          epoch: result.epoch,
        };
      }
      case 'rpc': {
        const result = await client.rpc(command.method, outgoing(command.data ?? null, command.b64));
        return { data: incoming(result.data) ?? null, b64: rawBytes(result.data) };
      }
      case 'send':
        await client.send(outgoing(command.data ?? null, command.b64));
        return {};
      case 'disconnect':
        client.disconnect();
        return {};
      case 'connect':
        client.connect();
        return {};
      default:
        throw { code: -1, message: `unknown command ${JSON.stringify(command.cmd)}` };
    }
  }

  const client = createClient();
  if (scenario.channel) createSubscription(client, scenario.channel).subscribe();
  client.connect();

  async function run(command) {
    const id = command.id ?? null;
    try {
      emit(command.cmd, { id, ...(await execute(client, command)) });
    } catch (err) {
      emit(command.cmd, { id, error: errorFields(err) });
    }
  }

  return { client, run };
}
