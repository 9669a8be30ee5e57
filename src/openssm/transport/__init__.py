"""Transport: the asyncio I/O under every process's channels.

WebSockets of the data channels (``websocket_connection``), local TCP sockets (``tcp_connection``),
read back-pressure shared by both (``read_throttle``), smux over a data channel (``mux``), bounded
HTTP body reads (``bounded_read``) and process start-up (``runtime``: the event loop and allocator).
Above ``protocol``/``auth``/``iam`` (pure cores), below ``agent``/``client`` and the server side.
"""
