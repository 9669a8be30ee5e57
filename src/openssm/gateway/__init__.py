"""The message gateway: AWS's ``ssmmessages`` (MGS) service, so the real amazon-ssm-agent and
session-manager-plugin work against OpenSSM unchanged.

- ``rest``: ``POST /v1/control-channel/<iid>`` and ``/v1/data-channel/<sid>`` (SigV4 for
  ``ssmmessages``, IAM ``ssmmessages:CreateControlChannel``/``CreateDataChannel``) answer 201 + XML
  with a single-use token, stored hashed (``channel_tokens``).
- ``sockets``: the WebSockets on the same paths. Agents sign the upgrade and then present their
  token; clients present the StreamUrl token (from StartSession/ResumeSession) in the first frame.
- ``control``: one control channel per instance on the node that holds it
  (``instances.control_node_id``); ``agent_task_complete`` is acknowledged and ends the session.
- ``session``: pairs a session's client and agent data sockets and relays frames verbatim (acks
  stay end to end); pause/resume around client reconnects; idle timeout, maximum duration and
  TerminateSession (bus channel ``node.<node_id>``) end it with ``channel_closed``.
- ``tap``: how recorders see stream data, in order and off the relay's path.
- ``extension``: how features plug into a node (``NodeExtension``: bus and control messages,
  control-channel opens, session taps), given to it by the server's composition; ``jobs`` is Run
  Command's.
- ``node``: the node's registry, heartbeat (``gateway_nodes``) and clean-up; ``app.install`` wires it.
Tuning knobs: ``settings.GatewaySettings`` (``app.install(settings=...)``).
"""
