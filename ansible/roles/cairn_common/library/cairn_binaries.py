#!/usr/bin/python
# -*- coding: utf-8 -*-
# cairn: the host's binaries in one round trip when none changed (the
# action plugin of the same name sends only those that did).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cairn_binaries
short_description: cairn's binaries on the host, sent only when their content changed
description:
  - Makes the directories given (root's, 0755) and dest.
  - Reports which of the named files are missing from dest or differ from
    the controller's (by SHA-1); the action plugin then sends those and
    calls the module again with them staged, and the module moves each
    into place atomically.
  - Every named file in dest ends root's, with mode.
options:
  dest:
    description: The host's binary directory.
    type: path
    required: true
  dirs:
    description: Directories to make first (root's, 0755).
    type: list
    elements: path
    default: []
  files:
    description: Each binary's name in dest and the SHA-1 of the controller's copy.
    type: dict
    required: true
  staged:
    description: Binaries the action plugin sent, name to the path on the host.
    type: dict
    default: {}
  mode:
    description: The binaries' mode.
    type: raw
    default: "0755"
author: cairn
"""

RETURN = r"""
need:
  description: The binaries whose content the host lacks (none staged for them).
  type: list
  elements: str
  returned: always
changes:
  description: What changed, path by path.
  type: list
  elements: str
  returned: always
"""

import hashlib
import os
import shutil
import tempfile

from ansible.module_utils.basic import AnsibleModule


def sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            dest=dict(type="path", required=True),
            dirs=dict(type="list", elements="path", default=[]),
            files=dict(type="dict", required=True),
            staged=dict(type="dict", default={}),
            mode=dict(type="raw", default="0755"),
        ),
        supports_check_mode=True,
    )
    p = module.params
    changes = []

    def attrs(path, mode, note=True):
        args = dict(path=path, owner="root", group="root", mode=mode, secontext=None, attributes=None)
        if module.set_fs_attributes_if_different(args, False, expand=False) and note:
            changes.append("%s: owner/mode" % path)

    for d in p["dirs"] + [p["dest"]]:
        if os.path.isdir(d):
            attrs(d, "0755")
            continue
        if not module.check_mode:
            os.makedirs(d, 0o755)
            attrs(d, "0755")
        changes.append("%s: created" % d)

    need = []
    for name, want in sorted(p["files"].items()):
        if os.sep in name or name in ("", ".", ".."):
            module.fail_json(msg="files: %r is not a file name" % name[:40])
        path = os.path.join(p["dest"], name)
        staged = p["staged"].get(name)
        if staged:
            if sha1(staged) != want:
                module.fail_json(msg="%s arrived damaged (its SHA-1 is not the controller's)" % name)
            fd, tmp = tempfile.mkstemp(dir=p["dest"], prefix=".cairn-")
            os.close(fd)
            try:
                shutil.copyfile(staged, tmp)
                attrs(tmp, p["mode"], note=False)
                os.rename(tmp, path)
            except BaseException:
                if os.path.lexists(tmp):
                    os.unlink(tmp)
                raise
            changes.append("%s: written" % path)
            continue
        if os.path.islink(path) or not os.path.isfile(path) or sha1(path) != want:
            need.append(name)
            continue
        if not module.check_mode:
            attrs(path, p["mode"])
    module.exit_json(changed=bool(changes) or bool(need), need=need, changes=changes)


if __name__ == "__main__":
    main()
