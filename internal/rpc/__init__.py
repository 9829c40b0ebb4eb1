"""What is ours alone about RPC: balancing calls over a service's replicas (balance.py).
Serving lives in the generated runtime (mcsv.twirp.TwirpApp)."""
