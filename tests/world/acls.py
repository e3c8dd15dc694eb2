"""POSIX ACLs in the kernel's xattr form (what setfacl writes), for tests
that check they are kept and restored."""

from __future__ import annotations

import struct

ACL_USER_OBJ, ACL_USER, ACL_GROUP_OBJ, ACL_MASK, ACL_OTHER = 0x01, 0x02, 0x04, 0x10, 0x20
ACL_UNDEFINED_ID = 0xFFFFFFFF


def posix_acl(*entries: tuple[int, int, int]) -> bytes:
    """The kernel's xattr form of a POSIX ACL (what setfacl writes)."""
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", *entry) for entry in entries)


def acl_granting_user_1234(owner: int, user: int, group: int, other: int) -> bytes:
    """An ACL of these permission bits for the owner, user 1234, the group
    (the mask as wide as the last two) and others."""
    return posix_acl(
        (ACL_USER_OBJ, owner, ACL_UNDEFINED_ID),
        (ACL_USER, user, 1234),
        (ACL_GROUP_OBJ, group, ACL_UNDEFINED_ID),
        (ACL_MASK, max(user, group), ACL_UNDEFINED_ID),
        (ACL_OTHER, other, ACL_UNDEFINED_ID),
    )
