"""The OpenSSM agent: runs on a managed node, dials out, speaks amazon-ssm-agent's protocol.

Modules:

* ``registration`` — hybrid activation (RSA key pair, RegisterManagedInstance) → ``mi-…`` id;
* ``credentials`` — RSA-signed RequestManagedInstanceRoleToken, refreshed on a lifetime fraction;
* ``config`` — state directory (``registration.json``, ``private-key.pem``; 0700/0600) and
  settings (``<state>/agent.json`` or ``OPENSSM_AGENT_<SETTING>`` variables);
* ``ssm_api``/``mgs``/``signing`` — SigV4-signed SSM JSON calls, MGS REST tokens and sockets;
* ``runner`` — health pings, control channel, one task per session;
* ``control_channel`` — the control WebSocket with backoff, ``agent_task_complete`` retries;
* ``data_channel`` — one session's data channel: dial, re-dial, endings (the protocol itself is
  ``openssm.protocol.datachannel``'s, driven by ``openssm.transport.datachannel``);
* ``session`` — a session from ``interactive_shell`` to ``agent_task_complete``;
* ``sessions`` — handlers per ``sessionType``: shell (PTY), commands, port (basic + smux).

The agent never imports server-side packages; it uses ``openssm.protocol``, ``openssm.auth`` and
``openssm.transport`` only.
"""
