"""job_svc: background jobs. Its tables and job kinds (models), their transitions (store),
the JobService RPCs and the broker it enqueues on (service), its app, and the Dramatiq
workers that run the jobs (worker)."""
