"""Admin pages for trusted CAs, the certificates that logged in, and the KRL in force: the same
effects as add_ssh_ca / remove_ssh_ca / load_krl, permissions per action, and no hash reachable
through a search or a filter."""

import subprocess

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from tests.conftest import bearer
from tests.ssh_helpers import certify, make_key, pub_path, public_key_line, sign
from tokens import login
from tokens.authorities import add_authority
from tokens.models import CertificateAuthority, NativeToken, RevocationList, SshCertificate
from tokens.ssh_certificates import parse_certificate

pytestmark = pytest.mark.django_db
NAMESPACE = "native-api-login"


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def carol_cert(tmp_path, django_user_model):
    """carol logged in once with a certificate (serial 9, key ID carol@corp) from CA corp."""
    carol = django_user_model.objects.create_user(username="carol")
    ca = make_key(tmp_path, "ed25519")
    add_authority("corp", public_key_line(ca))
    (tmp_path / "c").mkdir()
    key = make_key(tmp_path / "c", "ed25519")
    cert = certify(ca, pub_path(key), principals=["carol"], serial=9, identity="carol@corp")
    issued = login.exchange(
        login.LoginRequest(
            public_key=parse_certificate(cert.read_text()), nonce="n", signature=sign(cert, b"n", NAMESPACE)
        )
    )
    return {"user": carol, "ca": ca, "cert": cert, "token": issued.token, "dir": tmp_path}


def test_an_operator_trusts_a_ca_in_admin_and_it_records_who(admin_client, tmp_path):
    ca = make_key(tmp_path, "ecdsa256")
    response = admin_client.post(
        reverse("admin:tokens_certificateauthority_add"),
        {"name": "vault", "public_key": public_key_line(ca), "principals": "alice, bob"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    authority = CertificateAuthority.objects.get(name="vault")
    assert (authority.principals, authority.added_by) == ("alice,bob", "admin (admin)")
    assert authority.key_type == "ecdsa-sha2-nistp256"


@pytest.mark.parametrize(
    "key, error",
    [("ssh-ed25519 AAAA", "invalid CA public key"), ("sk", "security key")],
)
def test_the_ca_form_refuses_unusable_keys(admin_client, key, error):
    from tests.ssh_helpers import SoftwareSecurityKey

    line = SoftwareSecurityKey().line() if key == "sk" else key
    response = admin_client.post(
        reverse("admin:tokens_certificateauthority_add"), {"name": "x", "public_key": line}
    )
    assert response.status_code == 200 and error in response.content.decode()
    assert not CertificateAuthority.objects.exists()


def test_deleting_a_ca_in_admin_revokes_the_tokens_issued_through_it(admin_client, carol_cert):
    authority = CertificateAuthority.objects.get(name="corp")
    other = bearer(carol_cert["user"])
    response = admin_client.post(
        reverse("admin:tokens_certificateauthority_delete", args=[authority.pk]), {"post": "yes"}, follow=True
    )
    assert "Revoked 1 token(s) issued through CA" in response.content.decode()
    assert NativeToken.objects.get(pk=carol_cert["token"].pk).revoked_at is not None
    from tokens.verifier import verify_bearer

    assert verify_bearer(other).user == carol_cert["user"]  # a token not issued through the CA stays


def test_the_token_page_says_which_certificate_issued_it(admin_client, carol_cert):
    page = admin_client.get(reverse("admin:tokens_nativetoken_change", args=[carol_cert["token"].pk]))
    text = page.content.decode()
    assert "serial 9, key ID carol@corp" in text and "CA corp" in text
    assert carol_cert["token"].digest not in text


def test_the_certificate_action_revokes_its_tokens(admin_client, carol_cert):
    record = SshCertificate.objects.get()
    response = admin_client.post(
        reverse("admin:tokens_sshcertificate_changelist"),
        {"action": "revoke_tokens", "_selected_action": [record.pk]},
        follow=True,
    )
    assert "Revoked 1 token(s)" in response.content.decode()
    assert NativeToken.objects.get(pk=carol_cert["token"].pk).revoked_at is not None


def test_certificates_are_found_by_key_id_serial_or_principal_but_never_by_a_hash(admin_client, carol_cert):
    record = SshCertificate.objects.get()
    changelist = reverse("admin:tokens_sshcertificate_changelist")
    for term in ("carol@", "9", "carol"):
        assert record.key_id in admin_client.get(changelist, {"q": term}).content.decode()
    for term in (record.identity, record.key_fingerprint, record.authority_fingerprint):
        assert "carol@corp" not in admin_client.get(changelist, {"q": term}).content.decode()
    for lookup in ("identity", "identity__startswith", "key_fingerprint__startswith"):
        response = admin_client.get(changelist, {lookup: record.identity[:12]})
        assert response.status_code in (302, 400) or "carol@corp" not in response.content.decode()


def test_uploading_a_krl_in_admin_loads_it_and_revokes_what_it_names(admin_client, carol_cert):
    spec, krl = carol_cert["dir"] / "spec", carol_cert["dir"] / "x.krl"
    spec.write_text("serial: 9\n")
    subprocess.run(
        ["ssh-keygen", "-k", "-f", str(krl), "-s", str(pub_path(carol_cert["ca"])), str(spec)], check=True
    )
    upload = SimpleUploadedFile("corp.krl", krl.read_bytes())
    response = admin_client.post(reverse("admin:tokens_revocationlist_add"), {"file": upload}, follow=True)
    text = response.content.decode()
    assert "1 certificate(s) revoked, 1 token(s) revoked" in text
    row = RevocationList.objects.get()
    assert (row.loaded_by, row.source, row.summary["serials"]) == ("admin (admin)", "corp.krl", 1)
    assert NativeToken.objects.get(pk=carol_cert["token"].pk).revoked_at is not None
    listing = admin_client.get(reverse("admin:tokens_revocationlist_changelist")).content.decode()
    assert "admin (admin)" in listing and "1 serials" in listing


def test_a_file_that_is_not_a_krl_is_refused_and_the_krl_in_force_stays(admin_client):
    upload = SimpleUploadedFile("junk.krl", b"not a krl")
    response = admin_client.post(reverse("admin:tokens_revocationlist_add"), {"file": upload})
    assert response.status_code == 200 and "Not a KRL OpenSSH would load" in response.content.decode()
    assert not RevocationList.objects.exists()


def staff(django_user_model, client, *codenames):
    user = django_user_model.objects.create_user(username="helper", password="pw", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=codenames, content_type__app_label="tokens")
    )
    client.force_login(user)
    return user


def test_a_viewer_sees_cas_and_certificates_but_cannot_add_delete_or_revoke(
    client, django_user_model, carol_cert
):
    staff(
        django_user_model, client, "view_certificateauthority", "view_sshcertificate", "view_revocationlist"
    )
    authority = CertificateAuthority.objects.get()
    assert client.get(reverse("admin:tokens_certificateauthority_changelist")).status_code == 200
    assert client.get(reverse("admin:tokens_certificateauthority_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:tokens_certificateauthority_delete", args=[authority.pk]), {"post": "yes"}
        ).status_code
        == 403
    )
    assert client.get(reverse("admin:tokens_revocationlist_add")).status_code == 403
    listing = client.get(reverse("admin:tokens_sshcertificate_changelist")).content.decode()
    assert "revoke_tokens" not in listing
    client.post(
        reverse("admin:tokens_sshcertificate_changelist"),
        {"action": "revoke_tokens", "_selected_action": [SshCertificate.objects.get().pk]},
    )
    assert NativeToken.objects.get(pk=carol_cert["token"].pk).revoked_at is None
    assert CertificateAuthority.objects.exists()


def test_the_ca_page_links_to_its_tokens_through_the_ca_filter(admin_client, carol_cert, alice):
    bearer(alice)  # a token not issued through the CA
    listing = admin_client.get(
        reverse("admin:tokens_nativetoken_changelist"), {"ca": "corp"}
    ).content.decode()
    assert carol_cert["token"].public_id in listing
    assert listing.count("field-token_id") == 1


def test_the_token_list_cannot_be_filtered_by_a_certificate_hash(admin_client, carol_cert):
    identity = SshCertificate.objects.get().identity
    changelist = reverse("admin:tokens_nativetoken_changelist")
    lookups = ("certificate__identity__startswith", "certificate__key_fingerprint", "certificate__identity")
    for lookup in lookups:
        response = admin_client.get(changelist, {lookup: identity[:12]})
        assert response.status_code == 400, lookup
