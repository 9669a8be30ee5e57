"""``openssm login``: client-side sign-in through an OpenID Connect provider, ending in short-lived
AWS credentials in an AWS profile (AssumeRoleWithWebIdentity against OpenSSM). Imports nothing of
the server side: it meets the server on the wire, as the AWS CLI does."""
