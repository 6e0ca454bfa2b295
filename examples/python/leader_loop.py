#!/usr/bin/env python3
"""Does singleton work only while this replica's leader-sidecar says it leads, over gRPC.

A background thread follows the sidecar's Watch stream; the main thread does one unit of work at a
time, only while the newest status says ROLE_LEADER. Any other status stops the work at once, and
so does a broken stream: it means "not leader" until a new stream says otherwise.

Needs grpcio, protobuf, and leadership_pb2 generated from the sidecar's proto (see README.md).
  LEADER_GRPC                the sidecar's gRPC address (default 127.0.0.1:4041), or unix:/path/to/socket
  LEADER_CONTROL_TOKEN_FILE  over TCP: a file holding the sidecar's control token (--control-token-file),
                             sent with ConfirmStopped; not needed over the unix socket
"""
import os
import signal
import sys
import threading

import grpc

from leadership.v1 import leadership_pb2 as pb

lock = threading.Lock()  # held while `term` changes and during one unit of work
term = None  # the fencing term while this replica leads, None otherwise
last = None  # the last transition printed
stopping = threading.Event()


def become(new_term, line):
    """Records a transition; waits for a unit in progress, so none starts after a step-down."""
    global term, last
    with lock:
        term = new_term
        if line != last:  # print transitions, not every status
            print(line, flush=True)
            last = line


def control_metadata():
    """The control token as call metadata, for calls that change leadership over TCP."""
    path = os.environ.get("LEADER_CONTROL_TOKEN_FILE")
    if not path:
        return None
    with open(path, encoding="utf-8") as f:
        return (("authorization", "Bearer " + f.read().strip()),)


def watch(channel):
    # Generic stubs over the generated messages: no gRPC code generator needed.
    open_watch = channel.unary_stream("/leadership.v1.Leadership/Watch",
                                      request_serializer=pb.WatchRequest.SerializeToString,
                                      response_deserializer=pb.Status.FromString)
    confirm_stopped = channel.unary_unary("/leadership.v1.Leadership/ConfirmStopped",
                                          request_serializer=pb.ConfirmStoppedRequest.SerializeToString,
                                          response_deserializer=pb.ConfirmStoppedResponse.FromString)
    metadata = control_metadata()
    backoff = 0.5
    while not stopping.is_set():
        try:
            for status in open_watch(pb.WatchRequest()):
                backoff = 0.5
                if status.role == pb.ROLE_LEADER:
                    become(status.term, f"LEADING term={status.term}")
                    continue
                role = pb.Role.Name(status.role).removeprefix("ROLE_")
                become(None, f"STANDBY role={role} holder={status.holder}")
                if status.draining:
                    # The sidecar is shutting down and we have stopped: let it release the lease
                    # now rather than at the end of its --drain-timeout (harmless without one).
                    try:
                        confirm_stopped(pb.ConfirmStoppedRequest(), timeout=5, metadata=metadata)
                    except grpc.RpcError as e:
                        # Refused (no token over TCP) or the sidecar already gone: it releases at
                        # the end of its drain anyway.
                        print(f"ConfirmStopped failed: {e.code().name}", file=sys.stderr, flush=True)
            error = "stream ended"
        except grpc.RpcError as e:
            error = e.code().name
        if stopping.is_set():
            return
        become(None, f"STANDBY stream lost ({error})")
        stopping.wait(backoff)  # then reconnect
        backoff = min(backoff * 2, 10)


def main():
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    channel = grpc.insecure_channel(os.environ.get("LEADER_GRPC", "127.0.0.1:4041"))
    threading.Thread(target=watch, args=(channel,), daemon=True).start()
    try:
        while True:
            with lock:
                if term is not None:
                    # One unit of the singleton work. Pass the term along with its writes so that
                    # a downstream store can reject a stale leader.
                    print(f"WORK term={term}", flush=True)
            stopping.wait(0.2)  # SIGTERM and Ctrl-C interrupt this wait
    except KeyboardInterrupt:
        pass
    finally:
        stopping.set()
        channel.close()  # cancels the Watch


if __name__ == "__main__":
    main()
