#!/usr/bin/env python3
"""A real gRPC server and client (Debian's python3-grpcio), with raw bytes
as messages (no protobuf), for the gateway's gRPC passthrough specs.

  grpc_echo.py serve PORT NAME     methods of /echo.Echo:
      Unary     answers b"NAME:" + the request, metadata x-backend: NAME,
                trailing metadata x-trailer: done
      Stream    bidirectional: answers every message with NAME:message
      Fail      aborts with NOT_FOUND, "no such thing"
      Slow      sleeps 2 s, then answers
  grpc_echo.py call PORT           calls each through 127.0.0.1:PORT (h2c),
      prints a JSON object of what came back
"""
import json
import sys
import time
from concurrent import futures

import grpc


def serve(port, name):
    def unary(req, ctx):
        ctx.send_initial_metadata((("x-backend", name),))
        ctx.set_trailing_metadata((("x-trailer", "done"),))
        return name.encode() + b":" + req

    def stream(reqs, ctx):
        for m in reqs:
            yield name.encode() + b":" + m

    def fail(req, ctx):
        ctx.abort(grpc.StatusCode.NOT_FOUND, "no such thing")

    def slow(req, ctx):
        time.sleep(2)
        return b"late"

    handlers = {
        "Unary": grpc.unary_unary_rpc_method_handler(unary),
        "Stream": grpc.stream_stream_rpc_method_handler(stream),
        "Fail": grpc.unary_unary_rpc_method_handler(fail),
        "Slow": grpc.unary_unary_rpc_method_handler(slow),
    }
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("echo.Echo", handlers),))
    server.add_insecure_port("127.0.0.1:%d" % port)
    server.start()
    server.wait_for_termination()


def call(port):
    out = {}
    with grpc.insecure_channel("127.0.0.1:%d" % port) as ch:
        unary = ch.unary_unary("/echo.Echo/Unary")
        resp, c = unary.with_call(b"x" * 100000, timeout=10)
        out["unary_len"] = len(resp)
        out["unary_prefix"] = resp[:2].decode()
        out["unary_backend"] = dict(c.initial_metadata()).get("x-backend")
        out["unary_trailer"] = dict(c.trailing_metadata()).get("x-trailer")
        out["unary_code"] = c.code().name
        stream = ch.stream_stream("/echo.Echo/Stream")
        got = [m.decode() for m in stream(iter([b"a", b"b", b"c" * 70000]), timeout=10)]
        out["stream"] = [g[:6] for g in got]
        out["stream_last_len"] = len(got[-1]) if got else 0
        try:
            ch.unary_unary("/echo.Echo/Fail")(b"", timeout=10)
            out["fail"] = "OK"
        except grpc.RpcError as e:
            out["fail"] = e.code().name
            out["fail_details"] = e.details()
        try:
            ch.unary_unary("/echo.Echo/Slow")(b"", timeout=0.5)
            out["deadline"] = "OK"
        except grpc.RpcError as e:
            out["deadline"] = e.code().name
    print(json.dumps(out))


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    else:
        call(int(sys.argv[2]))
