"""grants.with_mask against pylibacl's ACL.calc_mask() (0.7 on Python 3.11,
0.6 on 3.6): the same mask for every ACL with named entries; for a minimal
ACL calc_mask adds one, which with_mask (as setfacl) does not: the reason
with_mask is kept."""
import itertools

import posix1e
import pytest

from certbot_wwu import grants

BITS = "---", "r--", "r-x", "rw-", "rwx"


def calc_mask(entries):
    acl = posix1e.ACL(text=",".join("{}:{}:{}".format(
        tag, "" if qualifier is None else qualifier, "".join(
            c if bits & b else "-" for c, b in zip("rwx", (4, 2, 1))))
        for (tag, qualifier), bits in entries.items()))
    acl.calc_mask()
    for entry in acl:
        if entry.tag_type == posix1e.ACL_MASK:
            return entry.permset.read << 2 | entry.permset.write << 1 | \
                entry.permset.execute
    return None


def bits(text):
    return sum(b for c, b in zip(text, (4, 2, 1)) if c != "-")


@pytest.mark.parametrize("group, user, named_group", list(itertools.product(
    BITS, BITS, ("---", "r--", "rwx"))))
def test_the_same_mask_as_calc_mask(group, user, named_group):
    entries = {("u", None): 6, ("g", None): bits(group), ("o", None): 0,
               ("u", 0): bits(user), ("g", 0): bits(named_group), ("m", None): 0}
    assert grants.with_mask(entries)[("m", None)] == calc_mask(entries)


def test_a_minimal_acl_gets_no_mask_where_calc_mask_adds_one():
    entries = {("u", None): 6, ("g", None): 4, ("o", None): 0}
    assert ("m", None) not in grants.with_mask(entries)
    assert calc_mask(entries) == 4
