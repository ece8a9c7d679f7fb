"""The outside systems: Finan (signed client) and the Tourwell CRM (client, shared rate
limit), and the retrying HTTP session they share.

May import ``bridge.observability``, ``bridge.store``, the base modules and ``schemas``.
"""
