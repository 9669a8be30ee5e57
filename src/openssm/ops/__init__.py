"""Operating the server: what it tells its operators, shared by every server-side component.

- ``metrics``: the Prometheus metrics of one node (its own registry; names and labels are the
  README's), filled by the API, authorisation and the gateway's metrics extension, and served by
  ``openssm.server.metrics`` on their own listener;
- ``requestid``: one id per HTTP request, in a context variable for the logs and in the
  ``x-amzn-RequestId`` response header;
- ``logformat``: the server's log output, as text or as one JSON object a line;
- ``refusals``: the one way a refused request is logged (who, what, on what, why), so that a
  refusal anywhere (API, MGS REST, channels) reads the same in the log.

It sits under ``services`` in the layers (``Services.metrics``) and imports no other OpenSSM package.
"""
