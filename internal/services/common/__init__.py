"""What every service shares and no service owns: the app factory and server (common.app),
readiness checks, the Twirp errors bad requests get, paging tokens and timestamps."""
