"""user_svc: the entry gateway. Its tables (models), the UserService RPCs (service), and its
app with the storage routes of the file backend (app)."""
