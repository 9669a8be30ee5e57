"""Agent state on disk (registration) and run-time settings.

State lives in one directory, readable only by the agent's user (0700, files 0600): the
registration (instance id, region, endpoints, how the node authenticates) and, for a node registered
through an activation, its hardware fingerprint and the RSA private key that authenticates
``RequestManagedInstanceRoleToken``. A node that joined with IAM credentials (``identity: "iam"``)
keeps no key: it signs with the standard AWS credential chain (``profile``: a named profile).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import pathlib
import re
from collections.abc import Mapping
from typing import Any, Final

from openssm.agent.default_user import USER_NAME
from openssm.errors import OpenSSMError
from openssm.protocol.backoff import Backoff
from openssm.protocol.versions import AGENT_VERSION as PROTOCOL_AGENT_VERSION

AGENT_NAME: Final = "openssm-agent"
# Four parts and above every plugin gate, so real clients choose smux and turn keepalive off.
AGENT_VERSION: Final = PROTOCOL_AGENT_VERSION

STATE_ENV: Final = "OPENSSM_AGENT_STATE"
REGISTRATION_FILE: Final = "registration.json"
PRIVATE_KEY_FILE: Final = "private-key.pem"
SETTINGS_FILE: Final = "agent.json"
ACTIVATION: Final = "activation"  # Registration.identity: RegisterManagedInstance, role via RSA key
IAM: Final = "iam"  # Registration.identity: the AWS credential chain, as an EC2 instance's role
MAX_STATE_FILE_SIZE: Final = 1 << 16

# Cloud metadata, time and DNS helpers reachable from inside instances: port forwarding to them
# would hand a session user the node's cloud credentials.
DEFAULT_DENIED_NETWORKS: Final = (
    "169.254.0.0/16",
    "fd00:ec2::/32",
    "100.100.100.200/32",
)


class StateError(OpenSSMError, RuntimeError):
    """The state directory is missing, unreadable or malformed."""


def default_state_dir() -> pathlib.Path:
    configured = os.environ.get(STATE_ENV)
    if configured:
        return pathlib.Path(configured)
    if os.geteuid() == 0:
        return pathlib.Path("/var/lib/openssm-agent")
    base = os.environ.get("XDG_STATE_HOME") or str(pathlib.Path.home() / ".local" / "state")
    return pathlib.Path(base) / "openssm-agent"


@dataclasses.dataclass(frozen=True)
class Registration:
    instance_id: str
    region: str
    endpoint: str  # SSM API endpoint (JSON 1.1), e.g. http://127.0.0.1:8080
    fingerprint: str  # activation nodes ("" for IAM nodes)
    mgs_endpoint: str | None = None  # message gateway; defaults to ``endpoint``
    registered_at: str = ""
    # Scale-out: more server nodes, tried in order when the current one is unreachable.
    failover_endpoints: tuple[str, ...] = ()
    identity: str = ACTIVATION  # ACTIVATION | IAM
    profile: str | None = None  # IAM nodes: the AWS profile to sign with (None: the default chain)

    @property
    def gateway_endpoint(self) -> str:
        return self.mgs_endpoint or self.endpoint


def _write_private(path: pathlib.Path, data: bytes) -> None:
    """Write atomically with 0600 from the first byte (no window where others can read)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def ensure_state_dir(state_dir: pathlib.Path) -> None:
    state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(state_dir, 0o700)


def save_registration(
    state_dir: pathlib.Path, registration: Registration, private_key_pem: bytes | None
) -> None:
    """The registration and, for an activation node, its private key (an IAM node has none: a key
    left by an earlier registration goes)."""
    ensure_state_dir(state_dir)
    if private_key_pem is None:
        (state_dir / PRIVATE_KEY_FILE).unlink(missing_ok=True)
    else:
        _write_private(state_dir / PRIVATE_KEY_FILE, private_key_pem)
    body = json.dumps(dataclasses.asdict(registration), indent=2) + "\n"
    _write_private(state_dir / REGISTRATION_FILE, body.encode())


def _read_bounded(path: pathlib.Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_STATE_FILE_SIZE + 1)
    except FileNotFoundError as exc:
        raise StateError(f"{path} not found: register first with `openssm agent register`") from exc
    except OSError as exc:
        raise StateError(f"cannot read {path}: {exc.strerror}") from exc
    if len(data) > MAX_STATE_FILE_SIZE:
        raise StateError(f"{path} is larger than {MAX_STATE_FILE_SIZE} bytes")
    return data


def load_registration(state_dir: pathlib.Path) -> tuple[Registration, bytes]:
    """The registration and the private key PEM (b"" for a node that joined with IAM credentials)."""
    path = state_dir / REGISTRATION_FILE
    try:
        raw = json.loads(_read_bounded(path))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise StateError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(raw, dict):
        raise StateError(f"{path} does not hold a JSON object")
    identity = raw.get("identity") or ACTIVATION
    if identity not in (ACTIVATION, IAM):
        raise StateError(f"{path}: unknown identity {identity!r}")
    profile = raw.get("profile")
    try:
        registration = Registration(
            instance_id=_required_str(raw, "instance_id"),
            region=_required_str(raw, "region"),
            endpoint=_required_str(raw, "endpoint"),
            fingerprint=_required_str(raw, "fingerprint") if identity == ACTIVATION else "",
            mgs_endpoint=raw.get("mgs_endpoint") or None,
            registered_at=str(raw.get("registered_at", "")),
            failover_endpoints=_str_tuple(raw, "failover_endpoints"),
            identity=identity,
            profile=profile if isinstance(profile, str) and profile else None,
        )
    except KeyError as exc:
        raise StateError(f"{path} lacks {exc.args[0]!r}") from exc
    if identity == IAM:
        return registration, b""
    return registration, _read_bounded(state_dir / PRIVATE_KEY_FILE)


def load_fingerprint(state_dir: pathlib.Path) -> str | None:
    """The fingerprint of an earlier registration: it identifies the machine, so it is kept."""
    try:
        registration, _key = load_registration(state_dir)
    except StateError:
        return None
    return registration.fingerprint or None


def _str_tuple(raw: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = raw.get(key) or []
    if not isinstance(value, list) or not all(isinstance(item, str) and item for item in value):
        raise KeyError(key)
    return tuple(value)


def _required_str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise KeyError(key)
    return value


@dataclasses.dataclass(frozen=True)
class AgentSettings:
    """Tunables; defaults match the real agent where it matters to peers."""

    heartbeat_seconds: float = 300.0
    ping_seconds: float = 54.0
    reconnect_initial_seconds: float = 1.0
    reconnect_max_seconds: float = 60.0
    handshake_timeout_seconds: float = 15.0
    drain_seconds: float = 2.0
    task_complete_attempts: int = 3
    task_complete_retry_seconds: float = 1.0
    credentials_refresh_fraction: float = 0.8
    max_sessions: int = 64
    http_timeout_seconds: float = 15.0
    denied_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
        ipaddress.ip_network(net) for net in DEFAULT_DENIED_NETWORKS
    )
    # A root agent's account for sessions without a run-as user (created as AWS's agent does), and
    # whether it gets sudo (AWS's agent always grants it; off here: least privilege by default).
    ssm_user: str = "ssm-user"
    ssm_user_sudo: bool = False
    # Where the agent calls kms:Decrypt for KMS-encrypted sessions ("" = the node's API endpoint,
    # which serves OpenSSM's KMS); AWS's agent calls this setting Kms.Endpoint.
    kms_endpoint: str = ""

    def reconnect_backoff(self) -> Backoff:
        """The waits between control-channel (and first health-report) attempts: the first drawn
        from the upper half of ``reconnect_initial_seconds`` (so agents cut off together do not
        come back in lockstep), then doubling up to ``reconnect_max_seconds``."""
        first = min(self.reconnect_initial_seconds, self.reconnect_max_seconds)
        return Backoff(initial_min=first / 2, initial_max=first, maximum=self.reconnect_max_seconds)

    @classmethod
    def load(cls, state_dir: pathlib.Path | None, env: Mapping[str, str] | None = None) -> AgentSettings:
        """Defaults, overridden by ``<state>/agent.json`` and then by ``OPENSSM_AGENT_*`` variables."""
        env = os.environ if env is None else env
        overrides: dict[str, Any] = {}
        if state_dir is not None and (state_dir / SETTINGS_FILE).exists():
            try:
                raw = json.loads(_read_bounded(state_dir / SETTINGS_FILE))
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise StateError(f"{state_dir / SETTINGS_FILE} is not valid JSON: {exc}") from exc
            if not isinstance(raw, dict):
                raise StateError(f"{state_dir / SETTINGS_FILE} does not hold a JSON object")
            overrides.update(raw)
        for field in dataclasses.fields(cls):
            value = env.get(f"OPENSSM_AGENT_{field.name.upper()}")
            if value is not None:
                overrides[field.name] = value
        return cls.from_mapping(overrides)

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> AgentSettings:
        known = {field.name: field for field in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for name, value in values.items():
            if name not in known:
                raise StateError(f"unknown agent setting {name!r}")
            kwargs[name] = _coerce(name, value)
        return cls(**kwargs)


_FLAGS: Final = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}


def _coerce(name: str, value: Any) -> Any:
    if name == "ssm_user":
        if not isinstance(value, str) or not USER_NAME.fullmatch(value):
            raise StateError(f"agent setting {name}: {value!r} is not a valid user name")
        return value
    if name == "ssm_user_sudo":
        flag = str(value).strip().lower() if not isinstance(value, bool) else ("true" if value else "false")
        if flag not in _FLAGS:
            raise StateError(f"agent setting {name}: invalid value {value!r} (true or false)")
        return _FLAGS[flag]
    if name == "kms_endpoint":
        if not isinstance(value, str) or (value and not re.fullmatch(r"https?://[^\s/]+/?", value)):
            raise StateError(f"agent setting {name}: {value!r} is not an http(s) URL")
        return value
    try:
        if name == "denied_networks":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(ipaddress.ip_network(str(item).strip(), strict=False) for item in items if item)
        number: float = int(value) if name in {"task_complete_attempts", "max_sessions"} else float(value)
    except (TypeError, ValueError) as exc:
        raise StateError(f"agent setting {name}: invalid value {value!r}") from exc
    if number <= 0:
        raise StateError(f"agent setting {name} must be positive, not {value!r}")
    return number
