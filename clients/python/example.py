#!/usr/bin/env python3
"""Rotate one rotation through rotator, then print the event it published.

    python example.py redis-credentials 6c7b5a6e-3f7a-4a9d-9a49-6f0f3c1b2a10

Server, token and NATS come from the same flags and environment variables as the `rotator` CLI
and server (ROTATOR_SERVER, ROTATOR_TOKEN, ROTATOR_CA_FILE, ROTATOR_NATS_URL,
ROTATOR_NATS_SUBJECT_PREFIX); see --help.

Exit status: 0 rotated (and the event arrived, unless --no-events), 1 the call failed,
2 bad usage, 3 rotated but no event arrived in time.
"""

import argparse
import asyncio
import datetime
import json
import os
import sys
import uuid

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from rotator.v1 import rotation_pb2, rotation_pb2_grpc

# Rejected before any backend ran: no attempt, so no event to wait for (docs/events.md).
NO_EVENT_REASONS = {
    "INVALID_ROTATION_TYPE", "INVALID_ROTATION_ID", "INVALID_REQUEST_ID", "INVALID_METADATA",
    "ROTATION_TYPE_NOT_ENABLED", "NO_BACKEND", "ROTATION_IN_PROGRESS", "OVERLOADED",
    "UNAUTHENTICATED", "PERMISSION_DENIED", "NO_CREDENTIAL_ISSUED",
    "UNKNOWN",  # no ErrorInfo: the call never reached rotator (connection refused, a proxy)
}


def parse_args(argv):
    env = os.environ.get
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("type", help="rotation type slug, e.g. redis-credentials")
    p.add_argument("rotation_id", help="the rotation's UUID")
    p.add_argument("--server", default=env("ROTATOR_SERVER", "http://127.0.0.1:50051"),
                   help="http://host:port, or https://host:port for TLS [ROTATOR_SERVER]")
    p.add_argument("--token", default=env("ROTATOR_TOKEN"),
                   help="bearer token [ROTATOR_TOKEN; prefer it or --token-file to the flag]")
    p.add_argument("--token-file", default=env("ROTATOR_TOKEN_FILE"),
                   help="file holding the bearer token [ROTATOR_TOKEN_FILE]")
    p.add_argument("--ca-file", default=env("ROTATOR_CA_FILE"),
                   help="PEM CA to verify an https server with (default: system roots) [ROTATOR_CA_FILE]")
    p.add_argument("--request-id", default=None, help="x-request-id to send (default: a new UUID)")
    p.add_argument("--timeout-seconds", type=float, default=130)
    p.add_argument("--nats-url", default=env("ROTATOR_NATS_URL", "nats://127.0.0.1:4222"),
                   help="NATS server(s) the events are published to [ROTATOR_NATS_URL]")
    p.add_argument("--subject-prefix", default=env("ROTATOR_NATS_SUBJECT_PREFIX", "rotator.events"),
                   help="the server's nats.subject_prefix [ROTATOR_NATS_SUBJECT_PREFIX]")
    p.add_argument("--event-timeout-seconds", type=float, default=30)
    p.add_argument("--no-events", action="store_true", help="do not wait for the event")
    args = p.parse_args(argv)
    if args.token_file:
        with open(args.token_file, encoding="utf-8") as f:
            args.token = f.read().strip()
    enum_name = "ROTATION_TYPE_" + args.type.upper().replace("-", "_")
    if enum_name not in rotation_pb2.RotationType.keys() or args.type != args.type.lower():
        p.error(f"unknown rotation type {args.type!r}")
    args.type_value = rotation_pb2.RotationType.Value(enum_name)
    return args


def channel(args):
    if args.server.startswith("https://"):
        root = None
        if args.ca_file:
            with open(args.ca_file, "rb") as f:
                root = f.read()
        return grpc.secure_channel(args.server[len("https://"):],
                                   grpc.ssl_channel_credentials(root_certificates=root))
    return grpc.insecure_channel(args.server.removeprefix("http://"))


def rotate(args):
    """RotateSecrets; returns (rotation or None, request id, failure reason or None)."""
    metadata = [("x-request-id", args.request_id)]
    if args.token:
        metadata.append(("authorization", f"Bearer {args.token}"))
    request = rotation_pb2.RotateSecretsRequest(type=args.type_value, rotation_id=args.rotation_id)
    with channel(args) as ch:
        stub = rotation_pb2_grpc.SecretRotationServiceStub(ch)
        try:
            response, call = stub.RotateSecrets.with_call(
                request, metadata=metadata, timeout=args.timeout_seconds)
        except grpc.RpcError as err:
            return None, *report_failure(err, args.request_id)
    request_id = dict(call.initial_metadata()).get("x-request-id", args.request_id)
    r = response.secret_rotation
    print(f"rotated {args.type} {r.id} ({r.name}): active index {r.active_index}, "
          f"backend {rotation_pb2.Backend.Name(r.backend)}, request {request_id}")
    return r, request_id, None


def report_failure(err, request_id):
    """Reads the rich status (google.rpc.Status in grpc-status-details-bin) and branches on
    ErrorInfo.reason, never on the message text. Returns (request id, reason)."""
    status = rpc_status.from_call(err)
    info, retry = None, None
    for detail in status.details if status else []:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
        elif detail.Is(error_details_pb2.RequestInfo.DESCRIPTOR):
            ri = error_details_pb2.RequestInfo()
            detail.Unpack(ri)
            request_id = ri.request_id or request_id
        elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
            retry = error_details_pb2.RetryInfo()
            detail.Unpack(retry)
    reason = info.reason if info else "UNKNOWN"  # no ErrorInfo: not rotator (a proxy, say)
    if info and not request_id:
        request_id = info.metadata.get("request_id")
    print(f"failed: {err.code().name} {reason} request={request_id}: {err.details()}")
    if reason == "NO_BACKEND":
        hint = "no backend serves this id: register it in [[rotations]] or configure infisical.url"
    elif reason in ("ROTATION_IN_PROGRESS", "UPSTREAM_ROTATION_IN_PROGRESS"):
        hint = "another attempt is running: retry after it ends"
    elif reason == "ROTATION_OUTCOME_UNKNOWN":
        hint = "outcome unknown: read the rotation (GetSecretRotation) before rotating again"
    elif reason in ("UNAUTHENTICATED", "PERMISSION_DENIED"):
        hint = "check the token (ROTATOR_TOKEN) and the identity's grants"
    elif reason.startswith("DRIVER_"):
        hint = "the local target refused or was unreachable; stored credentials unchanged"
    elif reason == "UNKNOWN":
        hint = "the call did not reach rotator: check --server (ROTATOR_SERVER) and TLS"
    elif retry is not None:
        hint = f"retryable after {retry.retry_delay.ToTimedelta().total_seconds():g}s"
    else:
        hint = "not retryable as is: see docs/errors.md for this reason"
    print(f"  -> {hint}")
    return request_id, reason


async def wait_for_event(args, request_id, since):
    """Prints the CloudEvent of our call: an ordered consumer over PREFIX.<type>.* from `since`,
    matched on the `requestid` extension. Returns whether it arrived in time."""
    import nats  # only needed for events
    from nats.js.api import ConsumerConfig, DeliverPolicy

    subject = f"{args.subject_prefix}.{args.type}.*"
    deadline = asyncio.get_running_loop().time() + args.event_timeout_seconds
    nc = await nats.connect(args.nats_url.split(","), allow_reconnect=False)
    try:
        js = nc.jetstream()
        while True:  # the relay creates the stream when it first connects
            try:
                sub = await js.subscribe(subject, ordered_consumer=True,
                                         deliver_policy=DeliverPolicy.BY_START_TIME,
                                         config=ConsumerConfig(opt_start_time=since))
                break
            except nats.js.errors.NotFoundError:
                if asyncio.get_running_loop().time() > deadline:
                    raise
                await asyncio.sleep(0.2)
        while True:
            left = deadline - asyncio.get_running_loop().time()
            if left <= 0:
                print(f"no event for request {request_id} on {subject} "
                      f"within {args.event_timeout_seconds:g}s")
                return False
            try:
                msg = await sub.next_msg(timeout=left)
            except nats.errors.TimeoutError:
                continue
            event = json.loads(msg.data)
            if event.get("requestid") != request_id:
                continue  # another caller's rotation of the same type
            attempt = event["data"]["attempt"]
            line = (f"event {event['type']} on {msg.subject}: rotation {event['subject']} "
                    f"request {event['requestid']} attempt {attempt['attemptNumber']} "
                    f"took {attempt['duration']}")
            if "activeIndex" in attempt:
                line += f" active index {attempt['activeIndex']}"
            if event["outcome"] == "failed":
                line += f" reason {event['data']['reason']}: {event['data']['message']}"
            print(line)
            return True
    finally:
        await nc.close()


def main(argv=None):
    args = parse_args(argv)
    args.request_id = args.request_id or str(uuid.uuid4())
    # Events at or after this instant; a little slack for clock skew with the NATS server.
    since = datetime.datetime.now(datetime.timezone.utc) - datetime.timedelta(seconds=5)
    rotation, request_id, reason = rotate(args)
    if args.no_events or reason in NO_EVENT_REASONS:
        return 0 if rotation else 1
    # Success: RotationCompleted. Failure after a backend ran: RotationFailed says how it ended.
    try:
        arrived = asyncio.run(wait_for_event(args, request_id, since))
    except Exception as err:  # NATS unreachable, no stream for the prefix, …
        print(f"cannot read events from {args.nats_url} ({args.subject_prefix}): {err!r}")
        arrived = False
    if rotation is None:
        return 1
    return 0 if arrived else 3


if __name__ == "__main__":
    sys.exit(main())
