"""TLS for outbound calls: always verified. A district whose system presents a certificate from
its own certificate authority is trusted by giving that authority's bundle (``ca_bundle``),
never by turning verification off: the toolkit refuses that outright."""

from __future__ import annotations

import ssl
from pathlib import Path

from hub.sdk.connector import Options
from hub.sdk.errors import ConnectorConfigError


class TlsOptions(Options, kw_only=True):
    """Options a connector for an HTTPS system inherits: ``ca_bundle``, a PEM file of the
    certificate authorities to trust besides the system's own (a path relative to the
    configuration folder, or absolute)."""

    ca_bundle: str | None = None


def trusting(ca_bundle: str | Path | None) -> ssl.SSLContext | None:
    """An SSL context that verifies against the system's authorities and `ca_bundle`; None
    (the default context) without a bundle. A missing or unreadable bundle is a configuration
    error naming the file."""
    if ca_bundle is None:
        return None
    path = Path(ca_bundle)
    context = ssl.create_default_context()
    try:
        context.load_verify_locations(cafile=str(path))
    except FileNotFoundError:
        raise ConnectorConfigError(f"ca_bundle {str(path)!r} does not exist") from None
    except (ssl.SSLError, OSError, ValueError) as error:
        raise ConnectorConfigError(
            f"ca_bundle {str(path)!r} is not a PEM file of certificates ({type(error).__name__})"
        ) from None
    return context


def checked(tls: ssl.SSLContext | bool | None) -> ssl.SSLContext | bool:
    """`tls` if it verifies certificates and host names; a ConnectorConfigError if it does not."""
    if tls is None or tls is True:
        return True
    if tls is False or (
        isinstance(tls, ssl.SSLContext)
        and (tls.verify_mode == ssl.CERT_NONE or not tls.check_hostname)
    ):
        raise ConnectorConfigError(
            "TLS certificate verification cannot be turned off; trust the system's certificate "
            "authority with a CA bundle (the connection's `ca_bundle` option) instead"
        )
    return tls
