"""Runs a job worker: job_svc's Dramatiq actors (email and conversion jobs; see
internal/services/job_svc/worker.py). Start several for more throughput; each takes
--threads jobs at a time."""

import argparse

from internal.services.job_svc.worker import run_worker

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=4, help="jobs run at once (default 4)")
    run_worker(parser.parse_args().threads)
