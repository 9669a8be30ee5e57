"""IAM OpenID Connect providers: CreateOpenIDConnectProvider, GetOpenIDConnectProvider,
ListOpenIDConnectProviders, DeleteOpenIDConnectProvider, UpdateOpenIDConnectProviderThumbprint,
AddClientIDToOpenIDConnectProvider and RemoveClientIDFromOpenIDConnectProvider, as the AWS CLI
calls them. A provider says whose ID tokens AssumeRoleWithWebIdentity accepts (its issuer) and for
which audiences (its client ids).

Beyond AWS: the URL may carry a port, and may be plain ``http://`` on a loopback host. The issuer's
TLS is checked against the server's CA bundle (``--oidc-ca-bundle``), not against the thumbprints,
which are kept and shown as AWS does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from openssm.api.errors import ApiError
from openssm.api.iam.common import authorize, iam_action
from openssm.api.iam.params import at_least_one, members, required, validation
from openssm.api.iam.tags import tag_context, tag_list, tags_param
from openssm.api.request import ApiRequest
from openssm.oidc.issuer import IssuerError, parse_issuer
from openssm.store.iam import oidc_providers
from openssm.store.iam.oidc_providers import MAX_CLIENT_IDS, MAX_THUMBPRINTS, OidcProviderRow

ARN_MEMBER: Final = "OpenIDConnectProviderArn"
THUMBPRINT: Final = r"[0-9A-Fa-f]{40}"


def _arn(form: Mapping[str, str]) -> str:
    return required(form, ARN_MEMBER, min_len=20, max_len=2048)


def _client_id(value: str, member: str) -> str:
    if not 1 <= len(value) <= 255:
        raise validation(member, value, "Member must have length between 1 and 255")
    return value


def _thumbprints(form: Mapping[str, str]) -> list[str]:
    values = members(form, "ThumbprintList")
    if len(values) > MAX_THUMBPRINTS:
        raise ApiError(
            "LimitExceeded", f"Thumbprint list must contain fewer than {MAX_THUMBPRINTS + 1} entries.", 409
        )
    for value in values:
        if len(value) != 40 or not all(char in "0123456789abcdefABCDEF" for char in value):
            raise validation("ThumbprintList", value, "Member must have length 40 (a hex SHA-1 fingerprint)")
    return [value.lower() for value in values]


def _shape(provider: OidcProviderRow) -> dict[str, Any]:
    return {
        "Url": provider.url,
        "ClientIDList": provider.client_ids,
        "ThumbprintList": provider.thumbprints,
        "CreateDate": provider.created_at,
        "Tags": tag_list(provider.tags),
    }


async def _existing(request: ApiRequest, action: str, arn: str) -> OidcProviderRow:
    await authorize(request, action, arn)
    return await oidc_providers.require(request.services.engine, arn)


@iam_action("CreateOpenIDConnectProvider")
async def create_open_id_connect_provider(request: ApiRequest, form: Mapping[str, str]) -> Any:
    url = required(form, "Url", max_len=255)
    client_ids = [_client_id(value, "ClientIDList") for value in members(form, "ClientIDList")]
    if len(client_ids) > MAX_CLIENT_IDS:
        raise ApiError(
            "LimitExceeded",
            f"Cannot exceed quota for ClientIdsPerOpenIdConnectProvider: {MAX_CLIENT_IDS}",
            409,
        )
    thumbprints, tags = _thumbprints(form), tags_param(form)
    try:
        issuer = parse_issuer(url)
    except IssuerError as exc:
        raise ApiError("InvalidInput", str(exc)) from None
    arn = oidc_providers.provider_arn(request.account, issuer.iam_url)
    await authorize(request, "CreateOpenIDConnectProvider", arn, tag_context(tags))
    provider = await oidc_providers.create(
        request.services.engine,
        request.account,
        url=issuer.iam_url,
        scheme=issuer.scheme,
        client_ids=client_ids,
        thumbprints=thumbprints,
        tags=tags,
        now=request.now(),
    )
    return {"OpenIDConnectProviderArn": provider.arn, "Tags": tag_list(provider.tags)}


@iam_action("GetOpenIDConnectProvider")
async def get_open_id_connect_provider(request: ApiRequest, form: Mapping[str, str]) -> Any:
    return _shape(await _existing(request, "GetOpenIDConnectProvider", _arn(form)))


@iam_action("ListOpenIDConnectProviders")
async def list_open_id_connect_providers(request: ApiRequest, form: Mapping[str, str]) -> Any:
    await authorize(request, "ListOpenIDConnectProviders", "*")
    providers = await oidc_providers.every_provider(request.services.engine)
    return {"OpenIDConnectProviderList": [{"Arn": provider.arn} for provider in providers]}


@iam_action("DeleteOpenIDConnectProvider")
async def delete_open_id_connect_provider(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn = _arn(form)
    await authorize(request, "DeleteOpenIDConnectProvider", arn)
    await oidc_providers.delete(request.services.engine, arn)


@iam_action("UpdateOpenIDConnectProviderThumbprint")
async def update_open_id_connect_provider_thumbprint(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, thumbprints = _arn(form), _thumbprints(form)
    at_least_one(thumbprints, "ThumbprintList")
    await authorize(request, "UpdateOpenIDConnectProviderThumbprint", arn)
    await oidc_providers.set_thumbprints(request.services.engine, arn, thumbprints)


@iam_action("AddClientIDToOpenIDConnectProvider")
async def add_client_id(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, client_id = _arn(form), _client_id(required(form, "ClientID", max_len=255), "ClientID")
    await authorize(request, "AddClientIDToOpenIDConnectProvider", arn)
    await oidc_providers.add_client_id(request.services.engine, arn, client_id)


@iam_action("RemoveClientIDFromOpenIDConnectProvider")
async def remove_client_id(request: ApiRequest, form: Mapping[str, str]) -> Any:
    arn, client_id = _arn(form), _client_id(required(form, "ClientID", max_len=255), "ClientID")
    await authorize(request, "RemoveClientIDFromOpenIDConnectProvider", arn)
    await oidc_providers.remove_client_id(request.services.engine, arn, client_id)
