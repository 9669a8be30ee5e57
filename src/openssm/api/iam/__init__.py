"""IAM Query API (``https://iam.amazonaws.com/doc/2010-05-08/``) as boto3 and the AWS CLI call it,
one module per concern: users, tags, groups, roles, policies (managed, with versions),
holder_policies (attached and inline, for users, groups and roles alike), access_keys,
login_profiles, mfa_devices and the simulator. Shared: ``params`` (Query parameters in IAM's
words) and ``common`` (registration, error shapes, authorisation).

Importing this package registers every IAM operation.
"""

from openssm.api.iam import (  # noqa: F401 - each registers its operations
    access_keys,
    groups,
    holder_policies,
    login_profiles,
    mfa_devices,
    policies,
    roles,
    simulator,
    tags,
    users,
)
