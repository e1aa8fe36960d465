"""The publish agent: notify messages delivered to every matching target, once each, in order per fingerprint."""
