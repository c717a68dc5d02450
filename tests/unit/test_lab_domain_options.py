"""`raorch lab up` options of a domain lab, refused before anything starts; the accounts file's
users and groups; `raorch lab down` without a lab; Kerberos principals named as accounts;
the first token of a handshake; binary SIDs."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from raorch.cli.lab import lab
from raorch.lab.auth import principal_account, token_kind
from raorch.lab.directory import DirectoryError, read_accounts
from raorch.lab.samba import sid_from_bytes, sid_to_bytes


def _up(tmp_path: Path) -> list[str]:
    return [
        "up",
        "--hosts",
        "1",
        "--inventory-out",
        str(tmp_path / "i.yaml"),
        "--state-dir",
        str(tmp_path / "s"),
    ]


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--auth", "kerberos"], "--auth kerberos needs a domain controller"),
        (["--auth", "ntlm,negotiate"], "--auth negotiate needs a domain controller"),
        (["--refuse-ntlm"], "--refuse-ntlm needs a domain controller"),
        (["--auth", "ntlm,digest"], "unknown method digest"),
    ],
)
def test_kerberos_options_need_the_samba_directory(
    tmp_path: Path, args: list[str], words: str
) -> None:
    result = CliRunner().invoke(lab, [*_up(tmp_path), *args])
    assert result.exit_code != 0
    assert words in result.output
    assert not (tmp_path / "s").exists()


def test_a_domain_lab_logs_in_with_a_domain_account(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        lab, [*_up(tmp_path), "--directory", "samba", "--user", "PARTNER\\helpdesk"]
    )
    assert result.exit_code != 0
    assert "not an account of the lab's domain CORP" in result.output or (
        "not found" in result.output  # no Samba on this machine: said first
    )


def test_lab_down_without_a_lab(tmp_path: Path) -> None:
    result = CliRunner().invoke(lab, ["down", "--state-dir", str(tmp_path)])
    assert result.exit_code != 0
    assert "no lab runs from" in result.output


def test_accounts_file_users_and_groups(tmp_path: Path) -> None:
    path = tmp_path / "accounts.yaml"
    path.write_text(
        "- CORP\\alice\n- {group: CORP\\Helpdesk-L2}\n- {user: CORP\\bob}\n- PARTNER\\carol\n"
    )
    accounts = read_accounts(path)
    assert accounts.names == ["CORP\\alice", "CORP\\Helpdesk-L2", "CORP\\bob", "PARTNER\\carol"]
    assert accounts.groups == ["CORP\\Helpdesk-L2"]
    path.write_text("- {team: CORP\\x}\n")
    with pytest.raises(DirectoryError, match="unknown key 'team'"):
        read_accounts(path)


def test_principals_become_accounts() -> None:
    realm, netbios = "CORP.RAORCH.TEST", "CORP"
    assert principal_account("jdoe@CORP.RAORCH.TEST", realm, netbios) == "CORP\\jdoe"
    assert principal_account("jdoe@corp.raorch.test", realm, netbios) == "CORP\\jdoe"
    assert principal_account("x@OTHER.TEST", realm, netbios) == "OTHER.TEST\\x"
    assert principal_account("CORP\\labadmin", realm, netbios) == "CORP\\labadmin"


def test_first_tokens() -> None:
    assert token_kind(b"NTLMSSP\x00\x01\x00\x00\x00") == "ntlm"
    # [APPLICATION 0], short and long lengths, then the mechanism's OID.
    spnego = b"\x60\x28" + bytes.fromhex("06062b0601050502") + b"\xa0" * 32
    krb5 = b"\x60\x82\x05\xa4" + bytes.fromhex("06092a864886f712010202") + b"\x01\x00"
    ms_krb5 = b"\x60\x82\x05\xa4" + bytes.fromhex("06092a864882f712010202") + b"\x01\x00"
    assert token_kind(spnego) == "spnego"
    assert token_kind(krb5) == "kerberos"
    assert token_kind(ms_krb5) == "kerberos"
    assert token_kind(b"garbage") == ""


def test_binary_sids() -> None:
    # jdoe's objectSid as the DC sent it (revision 1, 5 sub-authorities, authority 5).
    raw = bytes.fromhex("0105000000000005150000006d58bc7b1f03e603dc98717d4e040000")
    sid = "S-1-5-21-2075940973-65405727-2104596700-1102"
    assert sid_from_bytes(raw) == sid
    assert sid_to_bytes(sid) == raw
    assert sid_from_bytes(bytes.fromhex("01020000000000052000000021020000")) == "S-1-5-32-545"
    with pytest.raises(ValueError):
        sid_from_bytes(b"\x01\x05\x00")


def test_an_unreachable_dc_fails_the_domains_trust() -> None:
    """A DC that does not answer: the host cannot reach its domain, so every domain lookup
    fails with TrustFailure, the trusted PARTNER's too (they go through the host's DC)."""
    from raorch.lab.directory import default_directory
    from raorch.lab.domain import DomainDirectory, LdapAccounts
    from raorch.lab.host import seed_host
    from raorch.lab.operations import MARKER, run_pipeline
    from raorch.lab.profiles import PROFILES
    from raorch.lab.samba import SambaError

    attempts = []

    def connect() -> object:
        attempts.append(1)
        raise SambaError("cannot bind to the domain controller's LDAPS")

    directory = DomainDirectory(
        default_directory("CORP\\labadmin"),
        LdapAccounts(connect, "DC=corp,DC=raorch,DC=test", "CORP"),
    )
    host = seed_host(1, PROFILES["win10-ent"], "en-US", 0)
    ops = [
        {"Op": "ResolveAccount", "Account": "CORP\\jdoe"},
        {"Op": "ResolveAccount", "Account": "PARTNER\\helpdesk"},
    ]
    corp, partner = run_pipeline(host, directory, [(MARKER, True, [("Operations", ops)])]).outputs
    assert corp["ErrorKind"] == partner["ErrorKind"] == "TrustFailure"
    assert directory.broken_trusts == {"CORP"}
    directory.broken_trusts = {"PARTNER"}  # the faults file's broken trusts still apply
    assert directory.broken_trusts == {"PARTNER", "CORP"}
    assert attempts  # it did try the DC
