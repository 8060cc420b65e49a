"""The operator and data-team tools, as library calls that the CLI (and any other front end) calls:
the test webhook, re-sending from the delivery log, the dead-letter drain, and topic replay.

Re-sends go through the normal pipeline: a task due now on the shortest retry tier, which the retrier
picks up, with the same delivery id as the original delivery.
"""
