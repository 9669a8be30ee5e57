"""The browser console, served by ``openssm server`` under ``/console/``.

Sign in with an IAM user's access key id and secret (plus the user's password when it has a login
profile, and a TOTP code when it has an enabled virtual MFA device: ``aws iam create-login-profile``,
``create-virtual-mfa-device`` + ``enable-mfa-device``). Every page acts with that user's permissions:
the JSON endpoints call the API's own handlers in-process (``openssm.console.actor``).

Pages: nodes (live ping status, search, filter, "Start session" where allowed), shell (xterm.js over
the Session Manager data channel, spoken by ``static/js/datachannel.js`` straight to the gateway's
StreamUrl), sessions (active with Terminate where allowed, history, replay of asciicast recordings),
activations (create one, copy the register command).

Protections: HttpOnly SameSite=Strict session cookie (``__Host-`` and Secure under TLS, also behind a
trusted TLS proxy), server-side sessions revoked at sign-out, CSRF token + Origin check on every
state-changing request, Origin check on every browser WebSocket upgrade, a Content-Security-Policy
without inline script, and failed sign-in throttling per access key and per client address.

xterm.js comes from npm at build time (``make console-assets``: ``npm install`` then
``scripts/build-console-assets`` copies it into ``static/vendor/``, which is not committed).
"""
