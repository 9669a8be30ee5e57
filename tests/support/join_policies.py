"""The example policies of the README's "Live session join" section, as the tests use them."""

from __future__ import annotations

from typing import Any

# Watch any live session, never type into one.
WATCHER: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": "openssm:JoinSession",
            "Resource": "arn:aws:ssm:*:*:session/*",
            "Condition": {"StringEquals": {"openssm:JoinMode": "ReadOnly"}},
        }
    ],
}

# Join any live session, watching or typing.
TYPIST: dict[str, Any] = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Action": "openssm:JoinSession", "Resource": "arn:aws:ssm:*:*:session/*"}
    ],
}
