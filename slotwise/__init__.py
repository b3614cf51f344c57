"""The product: the ``slotwise`` command and the service, over the policy packages below."""
