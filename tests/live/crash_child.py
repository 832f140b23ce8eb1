"""The live process of the kill -9 tests: ``python -m tests.live.crash_child POINT:N ARGS...`` runs
``python run.py ARGS...`` with the live broker's checkpoint (``brokers.live.broker.LiveBroker.checkpoint``)
set to kill the process (SIGKILL) the N-th time it reaches POINT: ``after_intent`` (journal written,
order not sent), ``after_submit`` (sent, the journal not yet updated) or ``reconcile`` (a read of the
broker at start). An empty POINT:N kills nothing."""
from __future__ import annotations

import logging
import os
import signal
import sys
from typing import Callable

from brokers.live.broker import LiveBroker


def kill_at(plan: str) -> Callable[[str], None]:
    """A checkpoint that kills this process at the N-th passage through POINT (``plan``: ``POINT:N``)."""
    name, _, count = plan.partition(":")
    left = [int(count or 1)]

    def checkpoint(point: str) -> None:
        if point != name:
            return
        left[0] -= 1
        if left[0] <= 0:
            logging.getLogger("live.broker").warning("test hook: killing the process at %s", point)
            logging.shutdown()
            os.kill(os.getpid(), signal.SIGKILL)

    return checkpoint


def main(argv: list[str]) -> int:
    plan, args = argv[0], argv[1:]
    if plan:
        LiveBroker.checkpoint = staticmethod(kill_at(plan))
    import run

    return run.main(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
