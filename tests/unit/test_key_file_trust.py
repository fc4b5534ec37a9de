"""Whose key file is trusted (crypto/keys.py): one of the user running llm-config (0600/0400) or of root
(which may be group-readable, 0640/0440, without an access-control list); never another user's, whatever
its mode, and never a root-owned file whose ACL grants someone its group bits no longer show.

They run as root (this sandbox) and create real files; where the rule depends on the process not
being root, `os.geteuid` of `llm_config.crypto.keys` is made to answer a service uid (10001), which
is what the image runs as. The file's mode, owner and ACL are real, read by the real `fstat`.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest

from llm_config.crypto import keys
from llm_config.crypto.keys import find_keyring, generate_key
from llm_config.errors import SecretKeyError

SERVICE_UID = 10001
NOBODY = 65534

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="creates root- and other-owned files")

_ACL_USER_OBJ, _ACL_USER, _ACL_GROUP_OBJ, _ACL_MASK, _ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
_UNDEFINED = 0xFFFFFFFF


def _set_acl(path: Path, entries: list[tuple[int, int, int]]) -> None:
    """setfacl without setfacl: the system.posix_acl_access xattr (version 2, tag/perm/id entries)."""
    blob = struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, ident) for tag, perm, ident in entries)
    try:
        os.setxattr(path, "system.posix_acl_access", blob)
    except OSError as exc:  # pragma: no cover - a filesystem without POSIX ACLs
        pytest.skip(f"no POSIX ACLs here: {exc}")


def _key_file(tmp_path: Path, mode: int, uid: int = 0, gid: int = 0) -> Path:
    path = tmp_path / "master.key"
    path.write_text(generate_key() + "\n")
    os.chown(path, uid, gid)
    os.chmod(path, mode)
    tmp_path.chmod(0o755)
    return path


def test_a_root_owned_0640_key_file_with_an_acl_granting_another_user_read_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attack: a root-owned key file shows mode 0640, but a POSIX ACL names another user
    (`user:nobody:r--`): with an ACL the group bits of st_mode are the ACL *mask*, so the
    relaxed rule (group may read a root-owned file) accepts a file any named user can read — a
    reader outside the group. Before the relaxation the same file was refused (group bits set).
    Expected: a key file with an extended ACL granting anyone but the owner and its group access
    is refused (SecretKeyError), as a 0644 file would be."""
    path = _key_file(tmp_path, 0o640)
    _set_acl(path, [(_ACL_USER_OBJ, 6, _UNDEFINED), (_ACL_USER, 4, NOBODY), (_ACL_GROUP_OBJ, 4, _UNDEFINED),
                    (_ACL_MASK, 4, _UNDEFINED), (_ACL_OTHER, 0, _UNDEFINED)])
    assert (os.stat(path).st_mode & 0o777) == 0o640  # what the check sees
    monkeypatch.setattr(keys.os, "geteuid", lambda: SERVICE_UID)

    with pytest.raises(SecretKeyError):
        find_keyring(key_file=path)


def test_a_key_file_owned_by_another_non_root_user_is_refused(tmp_path: Path) -> None:
    """Attack: the check reads the owner now, but only to ask "is it root?": a 0600 key file owned
    by some other non-root user (here `nobody`) — who can rewrite or chmod it at will, swapping the
    master key or reading it — is accepted by a process that can read it (root, as in an init or
    upgrade Job, or `llm-config` run by an operator with sudo). ssh and PostgreSQL refuse a key
    owned by anyone but the process's user or root. Expected: SecretKeyError."""
    path = _key_file(tmp_path, 0o600, uid=NOBODY, gid=NOBODY)

    with pytest.raises(SecretKeyError):
        find_keyring(key_file=path)
