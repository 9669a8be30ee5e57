"""IAM entities in the database, one module each: ``users`` (with their login profile and MFA secret),
``groups`` (with their members), ``roles``, ``policies`` (managed policies and their versions),
``holder_policies`` (what is attached to or inlined in a user, group or role, and the documents that
apply to a principal), ``mfa_devices`` (virtual MFA devices). Access keys are ``store.access_keys``.

Names are unique case-insensitively, as in AWS (``Alice`` and ``alice`` cannot both exist).
Refusals are :mod:`openssm.store.errors` carrying AWS's messages; the API maps them to AWS's codes.
"""
