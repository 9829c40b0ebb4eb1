"""Who may call what: the credentials (tokens.py), the allow-list of each RPC (policy.py),
the server hook that enforces it (hooks.py), the callers' side (credentials.py) and the
operator's pages (pages.py). README, "Security", tells the whole design."""

from internal.auth.policy import OPERATOR, PUBLIC, USER, Principal, caller, may_see

__all__ = ["OPERATOR", "PUBLIC", "USER", "Principal", "caller", "may_see"]
