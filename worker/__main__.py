"""`python -m worker`: connect through envconfig, poll the task queue, stop on SIGINT/SIGTERM.

OpenTelemetry is set up from the OTEL_* variables before connecting (worker/telemetry.py),
and flushed on the way out: the process leaves through os._exit, which skips the SDK's hooks.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from worker import telemetry
from worker.config import DEMO_HELP, ConfigError, load
from worker.connection import connect, task_queue
from worker.exit import exit_now
from worker.registration import baton_worker
from worker.shutdown import until_interrupted


async def serve(config_file: Path | None, demo: bool = False) -> None:
    config = load(config_file, demo=demo)
    otel = telemetry.install("baton-worker")
    try:
        client = await connect()
        async with baton_worker(client, config):
            version = config.worker.version()
            logging.info(
                "worker polling task queue %r on %s, %s", task_queue(), client.service_client.config.target_host,
                f"version {version.to_canonical_string()}" if version else "unversioned",
            )
            await until_interrupted()
            logging.info("stopping: finishing in-flight activities")
    finally:
        otel.flush()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m worker", description=__doc__)
    parser.add_argument("--config", type=Path, help="baton.toml (default: $BATON_CONFIG or ./baton.toml)")
    parser.add_argument("--demo", action="store_true", help=DEMO_HELP)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        asyncio.run(serve(args.config, args.demo))
    except (ConfigError, ConnectionError) as err:
        print(f"worker: {err}", file=sys.stderr)
        exit_now(1)
    exit_now(0)


if __name__ == "__main__":
    main()
