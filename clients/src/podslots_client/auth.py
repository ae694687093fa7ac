"""How a request proves who sends it: SigV4 (the API's AWS_IAM auth), an API key, or nothing (local).

SigV4 takes its credentials from botocore's chain, so any source works: environment variables, a
profile, IRSA's web identity token, EKS Pod Identity's container credentials, an instance role.
Credentials are frozen at each signing, so refreshable ones (IRSA, Pod Identity) renew themselves.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Mapping
from typing import Any, Protocol
from urllib.parse import urlsplit

import botocore.session
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest

from podslots_client.errors import CannotSign

# {api-id}.execute-api.{region}.amazonaws.com (.cn in China); custom domains need the region given.
_EXECUTE_API_HOST = re.compile(r"^[a-z0-9]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(\.cn)?$")


class Auth(Protocol):
    def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> dict[str, str]:
        """The request's headers with its proof added."""
        ...


class SigV4:
    """Signs for API Gateway (`execute-api`), fresh for each request and each retry.

    The region is `region`, else the one in an `execute-api` host name, else botocore's configured
    region (AWS_REGION, AWS_DEFAULT_REGION, the profile).
    """

    def __init__(
        self, region: str | None = None, *, credentials: Any = None, session: Any = None, service: str = "execute-api"
    ) -> None:
        self.region = region
        self.service = service
        self._credentials = credentials
        self._session = session
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"SigV4(region={self.region!r}, service={self.service!r})"

    def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> dict[str, str]:
        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        SigV4Auth(self._frozen_credentials(), self.service, self.region_for(url)).add_auth(request)
        return dict(request.headers.items())

    def region_for(self, url: str) -> str:
        if self.region:
            return self.region
        found = _EXECUTE_API_HOST.match(urlsplit(url).hostname or "")
        if found:
            return found.group(1)
        region = self._botocore_session().get_config_variable("region")
        if not region:
            raise CannotSign(f"no AWS region to sign for {urlsplit(url).hostname}: set AWS_REGION or pass region")
        return str(region)

    def _frozen_credentials(self) -> Any:
        with self._lock:  # botocore resolves the chain once; refreshable credentials renew on read
            if self._credentials is None:
                self._credentials = self._botocore_session().get_credentials()
            credentials = self._credentials
        if credentials is None:
            raise CannotSign("no AWS credentials found to sign the request (env, web identity, container, role)")
        return credentials.get_frozen_credentials()

    def _botocore_session(self) -> Any:
        if self._session is None:
            self._session = botocore.session.get_session()
        return self._session


class ApiKey:
    """`AuthMode=API_KEY` deployments: the key travels in `x-api-key`. It never appears in a repr."""

    def __init__(self, key: str) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "ApiKey(***)"

    def headers(self, method: str, url: str, headers: Mapping[str, str], body: bytes | None) -> dict[str, str]:
        return {**headers, "x-api-key": self._key}


SIGV4_DEFAULT = SigV4()
"""The default of every client: the API uses AWS_IAM auth. Shared, so credentials resolve once."""
