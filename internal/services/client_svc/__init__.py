"""client_svc: the workflows' final callbacks (service), its app, and its command line (cli)
that drives the workflows and reads the callbacks back."""
