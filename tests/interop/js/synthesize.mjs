// One StartSpeechSynthesisStream call through AWS's SDK for JavaScript v3, for tests/test_interop_js.py.
//
//   node synthesize.mjs --endpoint https://127.0.0.1:PORT --ca ca.pem --access-key-id AKID \
//       --secret-access-key SECRET --voice Matthew --format pcm --rate 16000 --text "Hello." --out audio.bin
//
// Prints one JSON line on stdout: {"bytes": N, "out": path, "requestId": the x-amzn-requestid the SDK saw,
// "events": counts by event type (and StreamClosedEvent's RequestCharacters), "error": null or the SDK's
// error as {"name", "message", "fault", "status"}}. Exit status 0 whenever that line was printed.
//
// The private CA goes to the SDK's own HTTP/2 handler: the client builds
// `NodeHttp2Handler.create(config.requestHandler)` (clients/client-polly runtimeConfig), and a plain options
// object there becomes `new NodeHttp2Handler(options)`, whose `nodeHttp2ConnectOptions` are handed to
// `http2.connect(url, options)` (@smithy/node-http-handler NodeHttp2ConnectionManager.connect), so `ca` is
// Node's TLS option. Everything else is the SDK's default behaviour for this operation: an isolated HTTP/2
// session per event stream, SigV4 on the request, and a chained signature on each event
// (@aws-sdk/eventstream-handler-node EventSigningTransformStream).
import { readFileSync, writeFileSync } from "node:fs";
import { parseArgs } from "node:util";
import { PollyClient, StartSpeechSynthesisStreamCommand } from "@aws-sdk/client-polly";

const { values: opt } = parseArgs({
    options: {
        endpoint: { type: "string" },
        ca: { type: "string" },
        region: { type: "string", default: "us-east-1" },
        "access-key-id": { type: "string" },
        "secret-access-key": { type: "string" },
        "session-token": { type: "string" },
        voice: { type: "string", default: "Matthew" },
        engine: { type: "string", default: "generative" },
        format: { type: "string", default: "pcm" },
        rate: { type: "string" },
        text: { type: "string", multiple: true, default: ["Hello from the JavaScript SDK."] },
        out: { type: "string" },
        timeout: { type: "string", default: "30" },
    },
});

function report(result) {
    process.stdout.write(JSON.stringify(result) + "\n");
}

// A client that hangs must not hang the test: a bound on the whole call.
const watchdog = setTimeout(() => {
    report({ bytes: null, out: null, events: {}, error: { name: "HarnessTimeout", message: `no end after ${opt.timeout} s` } });
    process.exit(3);
}, Number(opt.timeout) * 1000);

async function* textEvents() {
    for (const text of opt.text) {
        yield { TextEvent: { Text: text } };
    }
    yield { CloseStreamEvent: {} };
}

const client = new PollyClient({
    region: opt.region,
    endpoint: opt.endpoint,
    credentials: {
        accessKeyId: opt["access-key-id"],
        secretAccessKey: opt["secret-access-key"],
        ...(opt["session-token"] ? { sessionToken: opt["session-token"] } : {}),
    },
    // One attempt: the tests look at what the first response was, not at the SDK's retry policy.
    maxAttempts: 1,
    requestHandler: {
        disableConcurrentStreams: true,
        nodeHttp2ConnectOptions: opt.ca ? { ca: readFileSync(opt.ca) } : {},
    },
});

const audio = [];
const events = {};
let error = null;
let requestId = null;
try {
    const response = await client.send(
        new StartSpeechSynthesisStreamCommand({
            Engine: opt.engine,
            OutputFormat: opt.format,
            VoiceId: opt.voice,
            ...(opt.rate ? { SampleRate: opt.rate } : {}),
            ActionStream: textEvents(),
        }),
    );
    requestId = response.$metadata?.requestId ?? null;
    for await (const event of response.EventStream) {
        for (const [name, body] of Object.entries(event)) {
            if (name === "$unknown") {
                continue;
            }
            events[name] = (events[name] ?? 0) + 1;
            if (name === "AudioEvent" && body.AudioChunk) {
                audio.push(Buffer.from(body.AudioChunk));
            }
            if (name === "StreamClosedEvent") {
                events.RequestCharacters = body.RequestCharacters;
            }
        }
    }
} catch (err) {
    error = {
        name: err?.name ?? String(err),
        message: err?.message ?? "",
        fault: err?.$fault ?? null,
        status: err?.$metadata?.httpStatusCode ?? null,
    };
    requestId = err?.$metadata?.requestId ?? requestId;
} finally {
    client.destroy();
}

const bytes = Buffer.concat(audio);
if (opt.out) {
    writeFileSync(opt.out, bytes);
}
clearTimeout(watchdog);
report({ bytes: bytes.length, out: opt.out ?? null, requestId, events, error });
