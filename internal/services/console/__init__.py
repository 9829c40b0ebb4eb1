"""The operator's console: a small web service (CONSOLE_URL/console) that shows and steers
the system through the other services' generated clients, calling as the operator: live job
counts per queue and state, a filterable paged job list, each job's history with Cancel and
Retry, conversions, the mailbox and every service's readiness."""
