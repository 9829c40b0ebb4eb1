"""job_svc: background jobs. Its tables and job kinds (models), their transitions (store),
the JobService RPCs and the broker sender (service), its app, and the Dramatiq workers that
run the jobs (worker: the process and each attempt's bookkeeping; handlers: what each kind of
job does)."""
