"""The HTTP layer: the CRM's API, the operators' API and status page, the service endpoints.

May import every layer below it (``bridge.services`` and down); nothing imports it but
``bridge.cli``.
"""
