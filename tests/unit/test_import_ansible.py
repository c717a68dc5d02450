"""`raorch inventory from-ansible`: reading Ansible inventories (INI, YAML, group_vars/) and
mapping the psrp / winrm variables to raorch's connection, as Ansible's plugins read them."""

from __future__ import annotations

import datetime
import textwrap
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from raorch.importers.ansible import AnsibleOptions, import_ansible, is_password
from raorch.importers.ansible_source import (
    Vaulted,
    expand_range,
    read_ini,
    read_inventory,
    read_yaml_inventory,
    split_port,
)
from raorch.importers.draft import DraftHost, ImportResult
from raorch.importers.waves import parse_waves
from raorch.importers.writer import render, write_inventory
from raorch.models.errors import InputError, Location
from raorch.models.inventory import AuthMethod, Scheme, SecretKind, SecretRef

HERE = Location("t.ini")
DATA = Path(__file__).resolve().parents[1] / "data" / "ansible"


def ini(text: str):  # type: ignore[no-untyped-def]
    inv = read_ini(textwrap.dedent(text), "t.ini")
    inv.reconcile()
    return inv


def values(inv, host: str) -> dict[str, object]:  # type: ignore[no-untyped-def]
    return {k: v.value for k, v in inv.effective_vars(host).items()}


def write_ca(path: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def run(tmp_path: Path, text: str, name: str = "hosts.ini", **options: object) -> ImportResult:
    src = tmp_path / name
    src.write_text(textwrap.dedent(text))
    options.setdefault("domains", ("CORP",))
    return import_ansible(src, AnsibleOptions(**options))  # type: ignore[arg-type]


def host(result: ImportResult, name: str) -> DraftHost:
    return next(h for h in result.draft.hosts if h.name == name)


def problems(exc: pytest.ExceptionInfo[InputError]) -> list[str]:
    return [str(p) for p in exc.value.problems]


# ---------------------------------------------------------------- host patterns


def test_ranges_as_the_docs_show_them() -> None:
    assert expand_range("www[01:50:2].example.com", HERE)[:3] == [
        "www01.example.com",
        "www03.example.com",
        "www05.example.com",
    ]
    assert len(expand_range("www[01:50:2].example.com", HERE)) == 25
    assert expand_range("db-[a:f].example.com", HERE) == [f"db-{c}.example.com" for c in "abcdef"]
    assert expand_range("r[1:2]-n[01:02]", HERE) == ["r1-n01", "r1-n02", "r2-n01", "r2-n02"]
    assert expand_range("plain", HERE) == ["plain"]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("www[01:100]", "same width"),
        ("www[01]", "begin:end"),
        ("www[01:", "closing"),
        ("www[1:5:0]", "at least 1"),
        ("www[a:5]", "neither numeric"),
    ],
)
def test_bad_ranges_are_located(pattern: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        expand_range(pattern, HERE)
    assert message in str(exc.value) and "t.ini" in str(exc.value)


def test_ports_after_names_and_ipv6() -> None:
    assert split_port("badwolf.example.com:5309") == ("badwolf.example.com", 5309)
    assert split_port("2001:db8::1") == ("2001:db8::1", None)
    assert split_port("[2001:db8::1]:5986") == ("2001:db8::1", 5986)
    assert split_port("www[01:03]") == ("www[01:03]", None)
    assert split_port("www[01:03]:5985") == ("www[01:03]", 5985)


# ---------------------------------------------------------------- INI


def test_ini_groups_children_and_precedence() -> None:
    inv = ini(
        """\
        mail.example.com
        [atlanta]
        host1
        host2 myvar=host
        [raleigh]
        host2
        host3
        [southeast:children]
        atlanta
        raleigh
        [southeast:vars]
        myvar=parent
        level=parent
        [atlanta:vars]
        level=child
        [all:vars]
        level=all
        other=all
        """
    )
    assert inv.members("southeast") == {"host1", "host2", "host3"}
    assert inv.groups["ungrouped"].hosts == ["mail.example.com"]
    # intro_inventory.rst: all < parent < child < host.
    assert values(inv, "host1") == {"myvar": "parent", "level": "child", "other": "all"}
    assert values(inv, "host2")["myvar"] == "host"
    assert values(inv, "host3")["level"] == "parent"


def test_ini_same_level_groups_merge_in_name_then_priority_order() -> None:
    text = """\
        [a_group]
        h
        [b_group]
        h
        [a_group:vars]
        testvar=a
        {priority}
        [b_group:vars]
        testvar=b
        """
    assert values(ini(text.format(priority="")), "h")["testvar"] == "b"
    prioritized = ini(text.format(priority="ansible_group_priority=10"))
    assert values(prioritized, "h")["testvar"] == "a"


def test_ini_values_are_python_literals_as_ansible_reads_them() -> None:
    inv = ini(
        """\
        [web]
        host2 ansible_port=222 quoted="'03#pa33w0rd'" flag=True u1=CORP\\svc u2='CORP\\svc'
        [web:vars]
        http_port=8080 # a comment
        """
    )
    got = values(inv, "host2")
    assert got["ansible_port"] == 222 and got["quoted"] == "03#pa33w0rd" and got["flag"] is True
    assert got["http_port"] == 8080
    # A host line is split like a shell line (shlex, posix): an unquoted backslash escapes.
    assert (got["u1"], got["u2"]) == ("CORPsvc", "CORP\\svc")


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        ("[web]\nh1\n[web:thing]\n", 3, "unknown type"),
        ("[web]\nh1\n[ web ]\n", 3, "invalid section"),
        ("[web]\nh1 novalue\n", 2, "expected key=value"),
        ("[web]\nh1\n[nope:vars]\nx=1\n", 3, "never defined"),
        ("[web]\nh1\n[top:children]\nwbe\n", 4, "did you mean 'web'"),
        ("[a:children]\nb\n[b:children]\na\n", 4, "loop"),
        ("[web]\nh1 x='unclosed\n", 2, "quotes"),
    ],
)
def test_ini_errors_name_the_line(text: str, line: int, message: str) -> None:
    with pytest.raises(InputError) as exc:
        read_ini(text, "t.ini")
    [problem] = exc.value.problems
    assert problem.location.line == line and message in problem.message + problem.hint


# ---------------------------------------------------------------- YAML


def test_yaml_as_the_plugin_examples_show_it() -> None:
    inv = read_yaml_inventory(
        textwrap.dedent(
            """\
            all:
              hosts:
                test1:
                test2:
                  host_var: value
              vars:
                group_all_var: value
              children:
                other_group:
                  children:
                    group_x:
                      hosts:
                        test5
                    group_y:
                      hosts:
                        test6:
                  vars:
                    g2_var2: value3
                  hosts:
                    test4:
                      ansible_host: 127.0.0.1
                last_group:
                  hosts:
                    test1
                  vars:
                    group_last_var: value
            """
        ),
        "t.yml",
    )
    inv.reconcile()
    assert list(inv.hosts) == ["test1", "test2", "test5", "test6", "test4"]
    assert inv.members("other_group") == {"test4", "test5", "test6"}
    assert values(inv, "test5") == {"group_all_var": "value", "g2_var2": "value3"}
    assert values(inv, "test1")["group_last_var"] == "value"
    assert inv.hosts["test4"].vars["ansible_host"].location.line == 21


def test_yaml_vault_values_are_never_read_and_merge_keys_work() -> None:
    inv = read_yaml_inventory(
        textwrap.dedent(
            """\
            all:
              vars: &base
                ansible_password: !vault |
                  $ANSIBLE_VAULT;1.1;AES256
                  6231336539
              hosts:
                h1:
                  <<: *base
                  ansible_port: 5985
            """
        ),
        "t.yml",
    )
    got = inv.hosts["h1"].vars
    assert isinstance(got["ansible_password"].value, Vaulted)
    assert got["ansible_port"].value == 5985


def test_yaml_plugin_configuration_is_refused_with_the_command_to_use() -> None:
    with pytest.raises(InputError) as exc:
        read_yaml_inventory("plugin: amazon.aws.aws_ec2\nregions: [eu-west-1]\n", "aws.yml")
    assert "ansible-inventory -i FILE --list --yaml" in str(exc.value)


def test_a_vault_encrypted_inventory_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "hosts.yml"
    src.write_text("$ANSIBLE_VAULT;1.1;AES256\n62313365\n")
    with pytest.raises(InputError) as exc:
        read_inventory(src)
    [problem] = exc.value.problems
    assert problem.location.line == 1 and "Ansible Vault" in problem.message


def test_format_is_guessed_without_a_telling_extension(tmp_path: Path) -> None:
    src = tmp_path / "hosts"
    src.write_text("[web]\nh1\n")
    assert list(read_inventory(src).hosts) == ["h1"]
    src.write_text("all:\n  hosts:\n    h2:\n")
    assert list(read_inventory(src).hosts) == ["h2"]


def test_group_vars_and_host_vars_beside_the_inventory(tmp_path: Path) -> None:
    (tmp_path / "group_vars" / "web").mkdir(parents=True)
    (tmp_path / "host_vars").mkdir()
    (tmp_path / "hosts.ini").write_text("[web]\nh1\nh2 level=host\n[web:vars]\nlevel=file\n")
    (tmp_path / "group_vars" / "all.yml").write_text("level: gv-all\nkept: all\n")
    (tmp_path / "group_vars" / "web" / "main.yml").write_text("level: gv-web\n")
    (tmp_path / "group_vars" / "web" / "vault.yml").write_text("$ANSIBLE_VAULT;1.1;AES256\n00\n")
    (tmp_path / "host_vars" / "h2.yaml").write_text("level: hv\n")
    inv = read_inventory(tmp_path / "hosts.ini")
    # inventory group vars < group_vars/all < group_vars/web < inventory host vars < host_vars/
    assert values(inv, "h1") == {"level": "gv-web", "kept": "all"}
    assert values(inv, "h2")["level"] == "hv"
    [notice] = inv.notices
    assert notice.location.file.endswith("vault.yml") and "Ansible Vault" in notice.message


# ---------------------------------------------------------------- mapping to raorch


def test_psrp_defaults_follow_the_plugin(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
        [win]
        a
        b ansible_port=5985
        c ansible_psrp_protocol=http
        d ansible_port=5999
        [win:vars]
        ansible_connection=psrp
        ansible_user=CORP\\svc
        """,
    )
    # psrp.py _build_kwargs: neither -> https 5986; port 5985 alone -> http; protocol -> port.
    got = {h.name: (h.connection.scheme, h.connection.port) for h in result.draft.hosts}
    assert got == {
        "a": (Scheme.HTTPS, 5986),
        "b": (Scheme.HTTP, 5985),
        "c": (Scheme.HTTP, 5985),
        "d": (Scheme.HTTPS, 5999),
    }
    assert {h.connection.auth for h in result.draft.hosts} == {AuthMethod.NEGOTIATE}


def test_winrm_defaults_and_transports(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
        [win]
        https-basic
        upn ansible_user=svc@CORP.EXAMPLE.COM
        listed ansible_winrm_transport=ntlm,kerberos
        http-ntlm ansible_port=5985 ansible_winrm_transport=ntlm
        [win:vars]
        ansible_connection=winrm
        ansible_user=CORP\\svc
        """,
    )
    # winrm.py: port 5986 https by default; no transport: kerberos for user@REALM, else
    # pywinrm's "ssl" (Basic over https).
    assert host(result, "https-basic").connection.auth is AuthMethod.BASIC
    assert host(result, "https-basic").connection.scheme is Scheme.HTTPS
    assert host(result, "upn").connection.auth is AuthMethod.KERBEROS
    assert host(result, "listed").connection.auth is AuthMethod.NTLM
    assert any("tries them in turn" in n.message for n in result.notices)
    http = host(result, "http-ntlm").connection
    assert (http.scheme, http.port, http.auth) == (Scheme.HTTP, 5985, AuthMethod.NTLM)


def test_basic_over_http_needs_keep_insecure(tmp_path: Path) -> None:
    text = """\
        [win]
        xp ansible_port=5985
        [win:vars]
        ansible_connection=winrm
        ansible_user=CORP\\svc
        """
    with pytest.raises(InputError) as exc:
        run(tmp_path, text)
    [problem] = exc.value.problems
    assert problem.location.line == 2 and "clear text" in problem.message
    assert "--keep-insecure" in problem.hint
    result = run(tmp_path, text, keep_insecure=True)
    assert host(result, "xp").connection.insecure is True


def test_cert_validation_ignore_needs_keep_insecure(tmp_path: Path) -> None:
    text = """\
        [win]
        a
        [win:vars]
        ansible_connection=psrp
        ansible_user=CORP\\svc
        ansible_psrp_cert_validation=ignore
        """
    with pytest.raises(InputError) as exc:
        run(tmp_path, text)
    assert [p.location.line for p in exc.value.problems] == [6]
    assert "ansible_psrp_cert_validation=ignore" in exc.value.problems[0].message
    conn = host(run(tmp_path, text, keep_insecure=True), "a").connection
    assert (conn.cert_validation, conn.insecure) == (False, True)


def test_ca_and_timeouts_are_imported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    ca = write_ca(tmp_path / "ca.pem")
    result = run(
        tmp_path,
        """\
        [win]
        a
        [win:vars]
        ansible_connection=winrm
        ansible_winrm_transport=ntlm
        ansible_user=CORP\\svc
        ansible_winrm_ca_trust_path=ca.pem
        ansible_winrm_operation_timeout_sec=40
        """,
    )
    conn = host(result, "a").connection
    assert conn.ca_bundle == str(ca) and conn.operation_timeout == 40


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("ansible_port=http", "ansible_port must be a number"),
        ("ansible_port=70000", "ansible_port must be a number"),
        ("ansible_psrp_auth=digest", "ansible_psrp_auth must be one of"),
        ("ansible_psrp_protocol=ftp", "must be one of http, https"),
        ("ansible_psrp_ca_cert=missing.pem", "no such file"),
        ("ansible_host='{{ inventory_hostname }}.corp'", "Jinja template"),
        ("ansible_user=CORP\\svc   # the account", "comment after it"),
    ],
)
def test_bad_values_are_errors_at_their_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(InputError) as exc:
        run(
            tmp_path,
            f"[win]\na\n[win:vars]\nansible_connection=psrp\nansible_user=CORP\\svc\n{line}\n",
        )
    [problem] = exc.value.problems
    assert problem.location.line == 6 and message in problem.message


def test_hosts_without_winrm_are_left_out_and_counted(tmp_path: Path) -> None:
    text = """\
        mail.example.com
        [win]
        w1 ansible_connection=ansible.builtin.psrp
        [linux]
        l1 ansible_connection=ssh
        l2 ansible_connection=ssh
        [all:vars]
        ansible_user=CORP\\svc
        """
    result = run(tmp_path, text)
    assert [h.name for h in result.draft.hosts] == ["w1"]
    left = [n.message for n in result.notices if "left out" in n.message]
    assert "2 host(s) left out, ansible_connection=ssh: l1, l2" in left
    assert (
        "1 host(s) left out, no ansible_connection (Ansible would use ssh): mail.example.com"
        in (left)
    )
    assumed = run(tmp_path, text, assume_connection="winrm", keep_insecure=False)
    assert [h.name for h in assumed.draft.hosts] == ["mail.example.com", "w1"]


def test_only_the_groups_asked_for(tmp_path: Path) -> None:
    text = "[a]\nh1\n[b]\nh2\n[all:vars]\nansible_connection=psrp\nansible_user=CORP\\svc\n"
    assert [h.name for h in run(tmp_path, text, groups=("b",)).draft.hosts] == ["h2"]
    with pytest.raises(InputError) as exc:
        run(tmp_path, text, groups=("c",))
    assert "no group 'c'" in str(exc.value) and "groups: a, b" in str(exc.value)


def test_accounts_domains_and_password_references(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
        [win]
        a
        b
        c ansible_user=ops@corp.example.com
        [win:vars]
        ansible_connection=psrp
        ansible_user=CORP\\svc
        """,
        domains=(),
    )
    assert result.draft.domains == ("CORP", "corp.example.com")
    assert host(result, "a").password == SecretRef(SecretKind.ENV, "RAORCH_PASSWORD")
    assert host(result, "c").password == SecretRef(SecretKind.ENV, "RAORCH_PASSWORD_2")
    prompt = run(
        tmp_path,
        "[w]\na ansible_user=X\\y\nb ansible_user=X\\z\n",
        **{"assume_connection": "psrp", "password_ref": SecretRef(SecretKind.PROMPT)},
    )
    assert {h.password for h in prompt.draft.hosts} == {SecretRef(SecretKind.PROMPT)}


def test_missing_user_and_missing_domain_are_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        run(tmp_path, "[w]\na\nb\n", assume_connection="psrp")
    assert "2 host(s) have no ansible_user: a, b" in str(exc.value) and "--user" in str(exc.value)
    result = run(tmp_path, "[w]\na\n", assume_connection="psrp", user="CORP\\svc")
    assert host(result, "a").username == "CORP\\svc"
    with pytest.raises(InputError) as exc:
        run(tmp_path, "[w]\na ansible_user=svc\n", assume_connection="psrp", domains=())
    assert "--domain" in str(exc.value)


def test_unused_variables_are_named(tmp_path: Path) -> None:
    result = run(
        tmp_path,
        """\
        [win]
        a
        [win:vars]
        ansible_connection=psrp
        ansible_user=CORP\\svc
        ansible_psrp_message_encryption=always
        ansible_psrp_path=wsman
        ansible_become_method=runas
        ntp_server=ntp.example.com
        """,
    )
    text = "\n".join(str(n) for n in result.notices)
    assert "t.ini" not in text and "hosts.ini:6: ansible_psrp_message_encryption" in text
    assert "ansible_psrp_path" not in text  # the plugin's default: nothing lost
    assert "ansible_become_method ([win:vars]) is not imported: raorch does not use become" in text
    assert "not connection settings, not imported: ntp_server" in text


# ---------------------------------------------------------------- the password rule

SECRETS = ("Sup3r-Secret-Ansible!", "PlainWordPassword", "host-level-pw#1")


def test_no_password_is_ever_copied_anywhere(tmp_path: Path) -> None:
    """Passwords in every place Ansible allows them: the value reaches neither the inventory,
    nor a notice, nor the summary; each notice names the file:line and the variable. A
    password that looks like an environment variable's name (PlainWordPassword) would pass the
    loader's reference check if it were copied as env:VALUE: it must not be either."""
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "win.yml").write_text(f"ansible_winrm_password: {SECRETS[1]}\n")
    result = run(
        tmp_path,
        f"""\
        [win]
        a ansible_password='{SECRETS[2]}'
        b
        [win:vars]
        ansible_connection=winrm
        ansible_winrm_transport=ntlm
        ansible_user=CORP\\svc
        ansible_password={SECRETS[0]}
        ansible_become_password={SECRETS[0]}
        """,
    )
    out = tmp_path / "out.yaml"
    write_inventory(result.draft, out)
    said = out.read_text() + "\n".join(map(str, result.notices)) + "\n".join(result.summary)
    for secret in SECRETS:
        assert secret not in said
    places = {
        (n.location.line, n.message.split(" ")[0].rstrip(":"))
        for n in result.notices
        if "not copied" in n.message
    }
    assert places == {
        (2, "ansible_password"),
        (8, "ansible_password"),
        (9, "ansible_become_password"),
        (1, "ansible_winrm_password"),
    }
    assert all(
        h.password == SecretRef(SecretKind.ENV, "RAORCH_PASSWORD") for h in result.draft.hosts
    )


@pytest.mark.parametrize(
    "name",
    [
        "ansible_password",
        "ansible_winrm_pass",
        "ansible_winrm_password",
        "ansible_psrp_password",
        "ansible_become_password",
        "ansible_become_pass",
        "ansible_ssh_pass",
    ],
)
def test_every_password_variable_is_recognised(name: str) -> None:
    assert is_password(name)


def test_waves_are_proposed_across_groups(tmp_path: Path) -> None:
    hosts = (
        "\n".join(f"a{i}" for i in range(50)) + "\n[b]\n" + "\n".join(f"b{i}" for i in range(50))
    )
    result = run(
        tmp_path,
        f"[a]\n{hosts}\n[all:vars]\nansible_connection=psrp\nansible_user=CORP\\svc\n",
        waves=parse_waves("canary:2,pilot:10%,broad"),
    )
    canary, pilot, broad = result.draft.waves
    assert canary.hosts == ("a0", "b0") and canary.max_fail_percentage == 0
    assert len(pilot.hosts) == 10 and pilot.max_fail_percentage == 5
    assert broad.rest and not broad.hosts


def test_the_output_loads_back_as_imported(tmp_path: Path) -> None:
    result = run(tmp_path, (DATA / "hosts.ini").read_text())
    out = tmp_path / "inv.yaml"
    loaded = write_inventory(result.draft, out)
    jumper = loaded.targets["jumper"]
    assert (jumper.address, jumper.connection.scheme, jumper.connection.port) == (
        "192.0.2.50",
        Scheme.HTTP,
        5985,
    )
    assert loaded.targets["host2"].connection.auth is AuthMethod.KERBEROS
    assert loaded.targets["host1"].credentials is not None
    assert loaded.targets["host1"].credentials.username == "CORP\\ra-southeast"
    assert "# " + str(tmp_path / "hosts.ini") + ":8 [webservers] (psrp)" in render(
        result.draft, out
    )


def test_a_host_listed_before_the_first_section_and_in_a_group_is_not_ungrouped() -> None:
    inv = ini("h1\nh2\n[web]\nh1\n")
    assert inv.groups["ungrouped"].hosts == ["h2"]
    assert inv.hosts["h1"].groups == ["web"]
