"""The consumer-group processes: the dispatcher (source topic -> first attempts) and the retrier (retry
tiers -> later attempts), both on one at-least-once runtime."""
