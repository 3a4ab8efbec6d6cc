"""The baseline of bench/test_grpc.py: a grpcio server of rater.v1.RatingService whose
Rate returns one fixed reply, doing no work; the floor any Python gRPC service has.

    python bench/grpcecho.py PORT        (prints "ready" once listening)
"""

from __future__ import annotations

import signal
import sys
from concurrent import futures

import grpc

from rater.v1 import rating_pb2, rating_pb2_grpc

REPLY = rating_pb2.RateReply(cost="0.0203", currency="USD", prefix="44",
                             destination="United Kingdom", billed_seconds=61, table="pn")


class Echo(rating_pb2_grpc.RatingServiceServicer):
    def Rate(self, request, context):  # type: ignore[no-untyped-def]
        return REPLY


def main() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    rating_pb2_grpc.add_RatingServiceServicer_to_server(Echo(), server)
    server.add_insecure_port(f"127.0.0.1:{sys.argv[1]}")
    server.start()
    # Blocked first: sigwait takes only signals that are blocked (else SIGTERM kills).
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    print("ready", flush=True)
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    server.stop(1).wait()


if __name__ == "__main__":
    main()
