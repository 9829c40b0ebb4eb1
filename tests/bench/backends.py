"""Load-mode figures for each backend combination, side by side from one run (`just bench`):
the whole system per combination, then the client's load mode against it."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.e2e.backends import BACKENDS, backend_env
from tests.e2e.system import whole_system
from tests.support.servers import ROOT, s3_server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--users", type=int, default=1000)
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    with s3_server() as s3:
        for name in BACKENDS:
            with (
                tempfile.TemporaryDirectory() as tmp,
                backend_env(name, s3) as env,
                whole_system(Path(tmp), workers=args.workers, env=env) as system,
            ):
                run = subprocess.run(
                    [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "load",
                     "--users", str(args.users), "--images", str(args.images),
                     "--concurrency", str(args.concurrency), "--quiet"],
                    env={**os.environ, **system.env}, capture_output=True, text=True,
                )  # fmt: skip
                print(f"== {name} ({args.workers} workers; exit {run.returncode})")
                print(run.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
