"""Server-side session logging.

OpenSSM records every session on the server, from the frames the gateway relays, so the session's
own user cannot delete the record on the node, and SSH and port sessions are recorded too:

- ``recorder``: a gateway tap (``openssm.gateway.tap``) that writes ``<data_dir>/sessions/<SessionId>``
  ``.cast`` (asciicast v2, ``asciicast``), ``.log`` (plain text, ``transcript``) and ``.jsonl``
  (session events; connections and byte counts for port sessions, ``port_record``) as the session runs;
- ``shipper`` + ``sinks``: a durable upload queue (``log_uploads`` table) that ships the local files to
  S3-compatible storage and CloudWatch Logs as the preferences document asks (streaming to CloudWatch
  while the session runs), retrying with backoff; completed uploads fill DescribeSessions' OutputUrl;
- ``cli``: ``openssm logs`` lists, prints and replays recordings;
- ``service``: the gateway node extension that runs the recorder and the shipper.
"""
