"""Secret references: parsing, and resolving against real env mappings and real files."""

from __future__ import annotations

import os
import sys
import types
from pathlib import Path

import pytest

from raorch.models.inventory import Credentials, SecretKind, SecretRef
from raorch.models.secretref import SecretSyntaxError, parse_secret_ref
from raorch.models.secrets import (
    SecretError,
    SecretResolver,
    read_secret_file,
    resolve_password,
)

PASSWORD = "S3cr3t-Pa55 word"


def creds(ref: str | SecretRef, user: str = "CORP\\svc") -> Credentials:
    return Credentials(user, ref if isinstance(ref, SecretRef) else parse_secret_ref(ref))


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("env:RAORCH_PASSWORD", SecretKind.ENV, "RAORCH_PASSWORD"),
        ("file:secrets/pw", SecretKind.FILE, "secrets/pw"),
        ("file:C:/pw.txt", SecretKind.FILE, "C:/pw.txt"),
        ("prompt", SecretKind.PROMPT, ""),
        ("keyring:raorch", SecretKind.KEYRING, "raorch"),
    ],
)
def test_parse_forms(text: str, kind: SecretKind, target: str) -> None:
    ref = parse_secret_ref(text)
    assert (ref.kind, ref.target) == (kind, target)
    assert str(ref) == text


@pytest.mark.parametrize("literal", ["hunter2", "Prompt", "env", "ENV:X", "p:w:d", ""])
def test_literal_is_refused_without_echoing_it(literal: str) -> None:
    with pytest.raises(SecretSyntaxError) as info:
        parse_secret_ref(literal)
    assert "not a literal password" in info.value.message
    assert "env:NAME" in info.value.hint
    if len(literal) > 3:  # short ones ("env") are words of the hint itself
        assert literal not in info.value.message + info.value.hint


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("env:", "variable name"),
        ("env:A-B", "variable name"),
        ("file:", "path"),
        ("keyring: ", "service"),
    ],
)
def test_malformed(text: str, says: str) -> None:
    with pytest.raises(SecretSyntaxError) as info:
        parse_secret_ref(text)
    assert says in info.value.message


# ---------------------------------------------------------------- env


def test_env() -> None:
    assert resolve_password(creds("env:PW"), environ={"PW": PASSWORD}) == PASSWORD


@pytest.mark.parametrize("environ", [{}, {"PW": ""}])
def test_env_unset_or_empty(environ: dict[str, str]) -> None:
    with pytest.raises(SecretError) as info:
        resolve_password(creds("env:PW"), environ=environ)
    assert "environment variable PW is not set" in str(info.value)
    assert "CORP\\svc" in str(info.value) and "export PW" in info.value.hint


# ---------------------------------------------------------------- file


def secret_file(tmp_path: Path, mode: int, content: str = PASSWORD + "\n") -> Path:
    path = tmp_path / "pw"
    path.write_text(content, encoding="utf-8")
    path.chmod(mode)
    return path


@pytest.mark.parametrize("mode", [0o600, 0o400])
def test_file_owner_only(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    assert resolve_password(creds(f"file:{path}")) == PASSWORD


def test_file_strips_exactly_one_newline(tmp_path: Path) -> None:
    assert read_secret_file(secret_file(tmp_path, 0o600, " pw \r\n")) == " pw "
    assert read_secret_file(secret_file(tmp_path, 0o600, "pw\n\n")) == "pw\n"
    assert read_secret_file(secret_file(tmp_path, 0o600, "pw")) == "pw"


@pytest.mark.skipif(os.name != "posix", reason="mode bits are a POSIX notion")
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620, 0o660])
def test_file_readable_or_writable_by_others_is_refused(tmp_path: Path, mode: int) -> None:
    path = secret_file(tmp_path, mode)
    with pytest.raises(SecretError) as info:
        read_secret_file(path)
    assert f"mode {mode:04o}" in str(info.value)
    assert f"chmod 600 {path}" in info.value.hint
    assert PASSWORD not in str(info.value)


def test_file_missing_empty_directory(tmp_path: Path) -> None:
    with pytest.raises(SecretError, match="does not exist"):
        read_secret_file(tmp_path / "nope")
    with pytest.raises(SecretError, match="is empty"):
        read_secret_file(secret_file(tmp_path, 0o600, "\n"))
    with pytest.raises(SecretError, match="not a regular file"):
        read_secret_file(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="FIFOs are POSIX")
def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pw"
    os.mkfifo(fifo, 0o600)
    with pytest.raises(SecretError, match="not a regular file"):
        read_secret_file(fifo)


def test_file_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "pw"
    path.write_bytes(b"\xff\xfe")
    path.chmod(0o600)
    with pytest.raises(SecretError, match="not UTF-8"):
        read_secret_file(path)


# ---------------------------------------------------------------- prompt


def test_prompt_asked_once_per_account() -> None:
    asked: list[str] = []

    def prompt(account: str) -> str:
        asked.append(account)
        return f"pw-of-{account}"

    resolver = SecretResolver(prompt=prompt)
    for _ in range(3):
        assert resolver.password(creds("prompt", "CORP\\a")) == "pw-of-CORP\\a"
        # Windows account names are case-insensitive: the same account, not a new prompt.
        assert resolver.password(creds("prompt", "corp\\A")) == "pw-of-CORP\\a"
        assert resolver.password(creds("prompt", "CORP\\b")) == "pw-of-CORP\\b"
    assert asked == ["CORP\\a", "CORP\\b"]


def test_prompt_without_a_terminal() -> None:
    with pytest.raises(SecretError) as info:
        SecretResolver(prompt=None).password(creds("prompt"))
    assert "cannot ask" in str(info.value) and "env:NAME" in info.value.hint


def test_prompt_empty_answer() -> None:
    with pytest.raises(SecretError, match="no password given"):
        SecretResolver(prompt=lambda _: "").password(creds("prompt"))


# ---------------------------------------------------------------- keyring


def test_keyring_missing_package(monkeypatch: pytest.MonkeyPatch) -> None:
    # None in sys.modules makes `import keyring` raise ImportError, whatever is installed.
    monkeypatch.setitem(sys.modules, "keyring", None)
    with pytest.raises(SecretError) as info:
        resolve_password(creds("keyring:raorch"))
    assert "keyring package is missing" in str(info.value)
    assert "raorch[keyring]" in info.value.hint


def test_keyring_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    store = {("raorch", "CORP\\svc"): PASSWORD}
    fake = types.ModuleType("keyring")
    fake.get_password = lambda service, user: store.get((service, user))  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "keyring", fake)
    assert resolve_password(creds("keyring:raorch")) == PASSWORD
    with pytest.raises(SecretError, match="has no password for CORP"):
        resolve_password(creds("keyring:other"))
