"""First start: the account's administrator, its CLI profile files, and the node role agents use.

Idempotent: every start makes sure these exist; an administrator key is minted only when the
credentials file is missing or names a key that no longer exists.
"""

from __future__ import annotations

import base64
import configparser
import datetime as dt
import json
import os
import pathlib
from collections.abc import Mapping

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from openssm.errors import OpenSSMError
from openssm.iam.arn import aws_managed_policy_arn
from openssm.services import Services
from openssm.store import access_keys, settings
from openssm.store.errors import EntityAlreadyExists
from openssm.store.iam import holder_policies, policies, roles, users
from openssm.store.secrets import SecretCipher, SecretCipherError

ADMIN_USER = "admin"
ADMIN_POLICY_NAME = "AdministratorAccess"
PROFILE = "openssm"
NODE_ROLE = "OpenSSMNodeRole"
NODE_POLICY_NAME = "AmazonSSMManagedInstanceCore"
NODE_POLICY_ARN = aws_managed_policy_arn(NODE_POLICY_NAME)

ADMIN_POLICY = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}

# Exactly the calls a registered agent makes with its role credentials (registration and the
# RSA-signed token and key-rotation calls authenticate by the instance key, not by this policy).
NODE_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {
            "Effect": "Allow",
            "Action": [
                "ssm:UpdateInstanceInformation",
                "ssm:ListInstanceAssociations",
                "ssm:UpdateInstanceAssociationStatus",
                "ssm:DescribeDocument",
                "ssm:GetDocument",
                "ssmmessages:CreateControlChannel",
                "ssmmessages:CreateDataChannel",
                "ssmmessages:OpenControlChannel",
                "ssmmessages:OpenDataChannel",
                "ec2messages:AcknowledgeMessage",
                "ec2messages:DeleteMessage",
                "ec2messages:FailMessage",
                "ec2messages:GetEndpoint",
                "ec2messages:GetMessages",
                "ec2messages:SendReply",
            ],
            "Resource": "*",
        }
    ],
}

NODE_TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ssm.amazonaws.com"}, "Action": "sts:AssumeRole"}
    ],
}


MASTER_KEY_CHECK = "master_key_check"
_CHECK_PLAINTEXT = b"openssm master key check"


class BootstrapError(OpenSSMError):
    """The server cannot start on this data (message says what to do)."""


def master_key_matches(cipher: SecretCipher, stored_check: str) -> bool:
    """The database's check value (``settings.master_key_check``) decrypts under ``cipher``."""
    try:
        cipher.decrypt(base64.b64decode(stored_check))
    except (SecretCipherError, ValueError):
        return False
    return True


async def _check_master_key(conn: AsyncConnection, cipher: SecretCipher) -> None:
    """Refuse a master key other than the one the database's secrets were encrypted with.

    Scale-out nodes share one database, so they must share one key (``OPENSSM_MASTER_KEY``).
    """
    stored = await settings.get(conn, MASTER_KEY_CHECK)
    if stored is None:
        await settings.insert(
            conn, MASTER_KEY_CHECK, base64.b64encode(cipher.encrypt(_CHECK_PLAINTEXT)).decode()
        )
        return
    if not master_key_matches(cipher, stored):
        raise BootstrapError(
            "this server's master key is not the one the database was created with; "
            "give every node the same key (OPENSSM_MASTER_KEY, base64 of 32 bytes) or the original "
            "<data-dir>/master.key"
        )


def _dump(policy: Mapping[str, object]) -> str:
    return json.dumps(policy, indent=2)


async def _ensure_account(conn: AsyncConnection, account: str) -> None:
    if await settings.get(conn, "account_id") is None:
        await settings.insert(conn, "account_id", account)


async def _ensure_admin_user(conn: AsyncConnection, account: str, now: dt.datetime) -> None:
    if await users.get(conn, ADMIN_USER) is None:
        await users.create(conn, account, ADMIN_USER, "/", {}, now, admin_bootstrap=True)
    await holder_policies.put_inline(
        conn, "user", ADMIN_USER, ADMIN_POLICY_NAME, _dump(ADMIN_POLICY), replace=False
    )


async def _ensure_node_role(conn: AsyncConnection, account: str, now: dt.datetime) -> None:
    description = "What an OpenSSM or SSM agent needs: health pings, control and data channels."
    await policies.ensure_aws_managed(
        conn, NODE_POLICY_ARN, NODE_POLICY_NAME, description, _dump(NODE_POLICY), now
    )
    if await roles.get(conn, NODE_ROLE) is None:
        description = "Role of managed nodes registered through activations."
        await roles.create(conn, account, NODE_ROLE, "/", _dump(NODE_TRUST_POLICY), description, {}, now)
        await holder_policies.attach_once(conn, "role", NODE_ROLE, NODE_POLICY_ARN)


def _write_private(path: pathlib.Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    os.fchmod(fd, 0o600)  # an existing file keeps its old mode under O_CREAT: narrow it before writing
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _profile_key_id(credentials_file: pathlib.Path) -> str | None:
    if not credentials_file.exists():
        return None
    parser = configparser.ConfigParser()
    try:
        parser.read(credentials_file)
        return parser.get(PROFILE, "aws_access_key_id", fallback=None)
    except configparser.Error:
        return None


def _config_text(region: str, public_url: str) -> str:
    return f"[profile {PROFILE}]\nregion = {region}\noutput = json\nendpoint_url = {public_url}\n"


def usage_text(data_dir: pathlib.Path, public_url: str) -> str:
    return (
        "OpenSSM administrator credentials are in the AWS CLI profile 'openssm':\n"
        f"  export AWS_SHARED_CREDENTIALS_FILE={data_dir / 'credentials'}\n"
        f"  export AWS_CONFIG_FILE={data_dir / 'config'}\n"
        f"  aws --profile {PROFILE} --endpoint-url {public_url} ssm describe-instance-information\n"
        "(newer AWS CLIs also read endpoint_url from the profile, so --endpoint-url may be left out)"
    )


def console_text(data_dir: pathlib.Path, public_url: str) -> str:
    """Where the browser console is and how to sign in to it (printed at every start)."""
    return (
        f"Browser console: {public_url}/console/\n"
        "  sign in with an access key id and its secret (and the user's password and MFA code, if it "
        "has them);\n"
        f"  the administrator's key is in {data_dir / 'credentials'} "
        "(aws_access_key_id, aws_secret_access_key)"
    )


async def bootstrap(services: Services) -> bool:
    """Make sure the administrator, node role and profile files exist. True if a new key was written."""
    config = services.config
    now = services.clock.now()
    account = config.account_id
    for attempt in range(2):
        try:
            async with services.engine.begin() as conn:
                await _check_master_key(conn, services.cipher)
                await _ensure_account(conn, account)
                await _ensure_admin_user(conn, account, now)
                await _ensure_node_role(conn, account, now)
            break
        except (sa.exc.IntegrityError, EntityAlreadyExists):
            # Another node of a scale-out cluster bootstrapped the shared database at the same
            # moment; a second pass finds its rows.
            if attempt:
                raise
    config.data_dir.mkdir(parents=True, exist_ok=True)
    credentials_file = config.data_dir / "credentials"
    _write_private(config.data_dir / "config", _config_text(config.region, config.public_url))
    key_id = _profile_key_id(credentials_file)
    if key_id is not None and await access_keys.find(services.engine, key_id) is not None:
        return False
    issued = await access_keys.create_long_term(
        services.engine, services.cipher, principal_type="user", principal_name=ADMIN_USER, now=now
    )
    _write_private(
        credentials_file,
        f"[{PROFILE}]\naws_access_key_id = {issued.access_key_id}\n"
        f"aws_secret_access_key = {issued.secret_access_key}\n",
    )
    return True
