"""Credentials never belong in a job spec: secret-looking variable names and ``user:password@`` URIs.

Below both its users: :mod:`batchsep.jobs` refuses them in specs, :mod:`batchsep.distributed.runtime` leaves
secret-looking variables out of the environment it forwards to Ray workers.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from batchsep.errors import ConfigError

_URI_CREDENTIALS_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/@\s]*:[^/@\s]*@")
_SECRET_WORDS = ("SECRET", "PASSWORD", "PASSWD", "TOKEN", "CREDENTIAL", "PRIVATE", "ACCESS_KEY")
_SECRET_SUFFIXES = ("_KEY", "_KEYS", "_PASS", "_PWD", "CONNECTION_STRING", "_SAS", "_AUTH")


def looks_like_secret(key: str) -> bool:
    """Whether an environment variable name looks like it holds a credential.

    >>> looks_like_secret("AWS_SECRET_ACCESS_KEY"), looks_like_secret("AWS_ENDPOINT_URL")
    (True, False)
    """
    k = key.upper()
    return (
        any(w in k for w in _SECRET_WORDS) or k.endswith(_SECRET_SUFFIXES) or k.startswith("AUTH")
    )


def secret_message(where: str) -> str:
    """The error message for a credential found at ``where`` (says where credentials go instead)."""
    return (
        f"{where} looks like a credential; a job spec must not hold credentials (it is uploaded to "
        "the cluster and stored with the job): set it in the cluster environment instead (node "
        "environment, a Kubernetes secret, an instance role; see cluster/README.md)"
    )


def check_no_credentials(value: Any, where: str) -> None:
    """Reject ``user:password@`` in any URI string inside ``value`` (lists and mappings included)."""
    if isinstance(value, str) and _URI_CREDENTIALS_RE.search(value):
        raise ConfigError(secret_message(f"{where} (a URI with user:password@)"))
    if isinstance(value, list | tuple):
        for i, v in enumerate(value):
            check_no_credentials(v, f"{where}[{i}]")
    if isinstance(value, Mapping):
        for k, v in value.items():
            check_no_credentials(v, f"{where}.{k}")
