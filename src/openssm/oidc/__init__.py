"""OpenID Connect, pure: issuer URLs and discovery documents, ID token verification (PyJWT), and the
authorization code flow's request values (PKCE, state, nonce). No I/O: the server (AssumeRoleWithWebIdentity,
the console's "Sign in with …") and ``openssm login`` fetch documents and keys themselves and hand
them here."""
