"""`python -m cnnlab.core.tracking replay`: send what a tracking outage kept in the outbox."""

from __future__ import annotations

import argparse

from cnnlab.core.paths import outbox_dir
from cnnlab.core.tracking.outbox import replay


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cnnlab.core.tracking",
                                     description="Send the tracking outbox to its store.")
    parser.add_argument("command", choices=["replay"])
    parser.add_argument("--uri", help="send to this store instead of the one each entry names")
    args = parser.parse_args(argv)
    try:
        sent, runs = replay(args.uri)
    except Exception as exc:  # noqa: BLE001 - the store is still down: say so in one line
        raise SystemExit(f"error: replay stopped, the store did not answer ({exc}); the "
                         f"outbox in {outbox_dir()} is kept") from None
    print(f"replayed {sent} entries of {runs} run(s) from {outbox_dir()}")


if __name__ == "__main__":
    main()
