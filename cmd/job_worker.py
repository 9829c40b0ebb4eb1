"""Runs a job worker: job_svc's Dramatiq actors (email and conversion jobs; see
internal/services/job_svc/worker.py). Start several for more throughput; each takes
--threads jobs at a time."""

import argparse

from internal.services.job_svc.worker import run_worker

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    # 8: a job mostly waits on its RPCs (a report's goes through user_svc to client_svc); with
    # 4, welcome workflows queued for the workers while the services had room to spare.
    parser.add_argument("--threads", type=int, default=8, help="jobs run at once (default 8)")
    run_worker(parser.parse_args().threads)
