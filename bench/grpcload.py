"""A gRPC load client for bench/test_grpc.py, run as its own process.

    python bench/grpcload.py ADDRESS CALLS INFLIGHT NUMBERS_FILE

CALLS Rate calls with INFLIGHT requests outstanding (futures); prints "calls
seconds". NUMBERS_FILE: one number per line (the calls cycle through them).
"""

from __future__ import annotations

import sys
import threading
import time

import grpc

from rater.v1 import rating_pb2, rating_pb2_grpc


def unary(address: str, calls: int, inflight: int, numbers: list[str]) -> None:
    channel = grpc.insecure_channel(address)
    stub = rating_pb2_grpc.RatingServiceStub(channel)
    requests = [rating_pb2.RateRequest(table="pn", number=n, duration_seconds=61)
                for n in numbers[:4096]]
    stub.Rate(requests[0], timeout=10)                  # connected and warm
    slots = threading.Semaphore(inflight)
    done = [0]
    failed = [0]
    lock = threading.Lock()

    def finished(f: grpc.Future) -> None:
        with lock:
            if f.exception() is None:
                done[0] += 1
            else:
                failed[0] += 1
        slots.release()

    began = time.perf_counter()
    for k in range(calls):
        slots.acquire()
        stub.Rate.future(requests[k % len(requests)], timeout=10).add_done_callback(finished)
    for _ in range(inflight):
        slots.acquire()
    elapsed = time.perf_counter() - began
    channel.close()
    if failed[0]:
        raise SystemExit(f"{failed[0]} calls failed")
    print(done[0], f"{elapsed:.6f}")


def main() -> None:
    with open(sys.argv[4]) as f:
        numbers = f.read().split()
    unary(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), numbers)


if __name__ == "__main__":
    main()
