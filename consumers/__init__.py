"""The consumer-group processes, all on one at-least-once runtime (``runtime``): the dispatcher (source
topic -> first attempts), the retrier (retry tiers -> later attempts) and the projector (source topic ->
the asset-state projection the alerts read). ``service`` assembles them into one process; ``supervisor``
runs several such processes on one machine."""
