// Does singleton work only while this replica's leader-sidecar says it leads, over gRPC.
//
// Follows the sidecar's Watch stream and does one unit of work at a time, only while the newest
// status says ROLE_LEADER. Any other status stops the work at once, and so does a broken stream: it
// means "not leader" until a new stream says otherwise. Node runs one callback at a time, so no unit
// can start between a step-down arriving and being recorded.
//
//   LEADER_GRPC                the sidecar's gRPC address (default 127.0.0.1:4041), or unix:/path/to/socket
//   LEADERSHIP_PROTO           path of leadership/v1/leadership.proto (default: this repository's copy)
//   LEADER_CONTROL_TOKEN_FILE  over TCP: a file holding the sidecar's control token (--control-token-file),
//                              sent with ConfirmStopped; not needed over the unix socket
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const protoFile = process.env.LEADERSHIP_PROTO || path.join(__dirname, '../../proto/leadership/v1/leadership.proto');
// Enums as names ('ROLE_LEADER'), int64 as Number (terms stay far below 2^53), '' for empty strings.
const definition = protoLoader.loadSync(protoFile, { enums: String, longs: Number, defaults: true });
const { Leadership } = grpc.loadPackageDefinition(definition).leadership.v1;
const client = new Leadership(process.env.LEADER_GRPC || '127.0.0.1:4041', grpc.credentials.createInsecure());

// Calls that change leadership (ConfirmStopped) carry the control token over TCP.
const control = new grpc.Metadata();
if (process.env.LEADER_CONTROL_TOKEN_FILE) {
  control.set('authorization', `Bearer ${fs.readFileSync(process.env.LEADER_CONTROL_TOKEN_FILE, 'utf8').trim()}`);
}

let term = null; // the fencing term while this replica leads, null otherwise
let last = null; // the last transition printed
let stream = null;
let retry = null;
let backoff = 500;

function become(newTerm, line) {
  term = newTerm;
  if (line !== last) console.log(line); // print transitions, not every status
  last = line;
}

function watch() {
  const call = (stream = client.watch({}));
  call.on('data', (status) => {
    backoff = 500;
    if (status.role === 'ROLE_LEADER') return become(status.term, `LEADING term=${status.term}`);
    become(null, `STANDBY role=${status.role.replace('ROLE_', '')} holder=${status.holder}`);
    // The sidecar is shutting down and we have stopped: let it release the lease now rather than
    // at the end of its --drain-timeout (harmless without one).
    // A refusal (no token over TCP) is reported; the sidecar releases at the end of its drain anyway.
    if (status.draining) {
      client.confirmStopped({}, control, { deadline: Date.now() + 5000 }, (e) => {
        if (e) console.error(`ConfirmStopped failed: ${grpc.status[e.code]}`);
      });
    }
  });
  // A stream that fails or ends means "not leader": stop, back off, reconnect.
  const lost = (why) => {
    call.removeAllListeners().on('error', () => {});
    if (stream !== call) return; // shutting down
    become(null, `STANDBY stream lost (${why})`);
    retry = setTimeout(watch, backoff);
    backoff = Math.min(backoff * 2, 10000);
  };
  call.on('error', (e) => lost(grpc.status[e.code]));
  call.on('end', () => lost('stream ended'));
}

// One unit of the singleton work every 200 ms while leading. Pass the term along with its writes
// so that a downstream store can reject a stale leader.
const worker = setInterval(() => {
  if (term !== null) console.log(`WORK term=${term}`);
}, 200);

// Stop everything; with nothing left to do, Node exits 0.
function shutdown() {
  clearInterval(worker);
  clearTimeout(retry);
  const call = stream;
  stream = null;
  call.cancel();
  client.close();
}
process.on('SIGTERM', shutdown);
process.on('SIGINT', shutdown);

watch();
