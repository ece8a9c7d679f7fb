"""What the bridge does with an invoice: the transition rules, the operations by caller,
the Tourwell → Finan mapping, and bulk re-sync.

May import ``bridge.integrations``, ``bridge.store``, ``bridge.observability``, the base
modules (``bridge.config``, ``bridge.errors``) and ``schemas``.
"""
