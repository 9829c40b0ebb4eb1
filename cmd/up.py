"""Brings the whole system up on this machine: the five services, the operator's console and
the job workers as processes, configured from the environment and .env. Waits until every
service is ready, prints the URLs (the console's among them), optionally runs the demo, then
shows the logs until Ctrl-C."""

import argparse
import os
import subprocess
import sys

from internal import registry
from internal.auth.pages import login_url
from internal.signals import StopSignals
from internal.supervisor import ROOT, SupervisorError, System, read_env_file


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", type=int, default=2, help="job worker processes (default 2)")
    parser.add_argument("--demo", action="store_true", help="run both workflows once ready")
    args = parser.parse_args()

    env = read_env_file(ROOT / ".env")
    if sys.stdout.isatty() and "MCSV_LOG_FORMAT" not in {**os.environ, **env}:
        # The children write to our pipe, not the terminal: ask them for the readable format.
        env["MCSV_LOG_FORMAT"] = "text"
    system = System(
        env=env,
        workers=args.workers,
        output=sys.stdout,
        colour=sys.stdout.isatty(),
        restart=True,  # a crashed process is restarted; see RestartPolicy
    )
    stop = StopSignals()
    try:
        system.start()
    except SupervisorError as exc:
        print(f"up: {exc}", file=sys.stderr)
        system.stop()
        return 1

    settings = system.settings
    print("\nmcsv is up:")
    for service in registry.CONTRACT_NAMES:
        print(f"  {service:<10} {settings.url(service)}  (Twirp at /twirp/..., API docs at /docs)")
    console = f"{settings.url('console')}/console"
    print(f"  console    {console}  (jobs, conversions, mailbox, health)")
    print(f"  sign in    {login_url(settings, console)}  (signs the browser in as the operator)")
    print(f"  operator   OPERATOR_TOKEN in {settings.data_dir}/operator-token, unless set")
    print(f"  data       {settings.data_dir}")
    print("Ctrl-C stops everything.\n", flush=True)

    if args.demo:
        demo = subprocess.run(
            [sys.executable, str(ROOT / "cmd" / "client_svc.py"), "demo"],
            cwd=ROOT,
            env={**os.environ, **system.env},
        )
        print(f"\ndemo finished with status {demo.returncode}; still running, Ctrl-C stops.\n")

    try:
        while not stop.wait(0.5):
            system.check_alive()  # raises only once the supervisor gave up restarting
    except SupervisorError as exc:
        print(f"up: {exc}; stopping everything", file=sys.stderr)
        system.stop()
        return 1
    print("\nstopping…", flush=True)
    system.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
