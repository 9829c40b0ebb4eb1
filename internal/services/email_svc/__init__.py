"""email_svc: templated emails, delivered once per idempotency key. Its table (models), the
EmailService RPCs (service), the mailbox web pages (mailbox) and its app."""
