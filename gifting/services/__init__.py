"""Every write to a gift, by stage: intake (create), outbox (publish, retry, dead-letter, redrive),
delivery (issue and send, fail) and holds (review, hold periods, the recipient's confirmation).

Each state change goes through gifting.transitions, which holds the table of
allowed moves and the one lock order.
"""
