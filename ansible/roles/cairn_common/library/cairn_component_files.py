#!/usr/bin/python
# -*- coding: utf-8 -*-
# cairn: each component's files on a systemd host in one step (one round
# trip to the host instead of one per file: through nsenter or SSH that
# was most of a site's provisioning).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cairn_component_files
short_description: Each component's view of the secrets, its state directories and its systemd unit
description:
  - For every component, its own copies of the bundle files it reads
    (private_dir/<name>, 0500, owned by its user; the files 0400, the
    directories they are in root's, 0755).
  - Its state directories (/var/lib/<state_name>/<last element>, 0700,
    owned by its user), seeded from the bundle with C(cp --update) (a file
    the component changed since stays as it is), and the bundle's mount
    point when the bundle lacks it.
  - The unit files given (root's, 0644; other files too, such as a
    firewall's rules), their directory made (root's, 0755) if missing.
  - Changes only what differs; files are written atomically.
options:
  bundle_dir:
    description: The host's bundle directory.
    type: path
    required: true
  private_dir:
    description: Where the components' views go.
    type: path
    required: true
  components:
    description: >-
      Each component by its name, with user, files (its view, relative to
      bundle_dir), state (relative to bundle_dir) and state_name; other
      keys are ignored.
    type: dict
    default: {}
  units:
    description: Unit files (or other root-owned 0644 files), path to content.
    type: dict
    default: {}
author: cairn
"""

RETURN = r"""
units_changed:
  description: Whether a unit file was written.
  type: bool
  returned: always
changes:
  description: The paths changed, each with what changed.
  type: list
  elements: str
  returned: always
"""

import os
import tempfile

from ansible.module_utils.basic import AnsibleModule

# The bundle's state directories that are not seeded (logs, sockets).
UNSEEDED = ("var/logs", "var/run")


class Files(object):
    def __init__(self, module):
        self.module = module
        self.changes = []

    def note(self, path, what, changed):
        if changed:
            self.changes.append("%s: %s" % (path, what))
        return changed

    def set_attrs(self, path, owner, group, mode):
        """Owner, group and mode (None: left as it is) of path; True if one changed."""
        args = dict(path=path, owner=owner, group=group, mode=mode, secontext=None, attributes=None)
        return self.module.set_fs_attributes_if_different(args, False, expand=False)

    def attrs(self, path, owner, group, mode):
        return self.note(path, "owner/mode", self.set_attrs(path, owner, group, mode))

    def directory(self, path, owner, group, mode):
        """mkdir -p: every directory made, and path, get the owner and mode."""
        if os.path.lexists(path) and not os.path.isdir(path):
            self.module.fail_json(msg="%s exists and is not a directory" % path)
        missing = []
        p = path
        while not os.path.lexists(p):
            missing.append(p)
            p = os.path.dirname(p)
        for d in reversed(missing):
            os.mkdir(d, 0o700)
            self.set_attrs(d, owner, group, mode)
            self.note(d, "created", True)
        if not missing:
            self.attrs(path, owner, group, mode)

    def write(self, path, data, owner, group, mode, like=None):
        """Write data to path atomically unless path holds it already; like:
        a file whose timestamps the new file gets."""
        try:
            with open(path, "rb") as f:
                same = not os.path.islink(path) and f.read() == data
        except FileNotFoundError:
            same = False
        if same:
            self.attrs(path, owner, group, mode)
            return
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".cairn-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            if like is not None:
                st = os.stat(like)
                os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
            self.set_attrs(tmp, owner, group, mode)
            os.rename(tmp, path)
        except BaseException:
            if os.path.lexists(tmp):
                os.unlink(tmp)
            raise
        self.note(path, "written", True)

    def copy(self, src, dst, owner, group, mode):
        with open(src, "rb") as f:
            self.write(dst, f.read(), owner, group, mode, like=src)

    def copy_tree(self, src, dst, owner, group, mode, dir_mode):
        """Copy the tree src into dst: files mode, directories dir_mode, all the owner's."""
        self.directory(dst, owner, group, dir_mode)
        for root, dirs, files in os.walk(src):
            rel = os.path.relpath(root, src)
            target = dst if rel == "." else os.path.join(dst, rel)
            for d in sorted(dirs):
                self.directory(os.path.join(target, d), owner, group, dir_mode)
            for f in sorted(files):
                self.copy(os.path.join(root, f), os.path.join(target, f), owner, group, mode)

    def chown_tree(self, path, owner, group):
        """chown -R owner:group path (symbolic links themselves, not what they name)."""
        self.attrs(path, owner, group, None)
        for root, dirs, files in os.walk(path):
            for name in dirs + files:
                self.attrs(os.path.join(root, name), owner, group, None)

    def seed(self, src, dst):
        """cp --update: a file the component changed since stays as it is."""
        rc, out, err = self.module.run_command(
            ["cp", "-r", "-v", "--update", "--preserve=mode,timestamps", src + "/.", dst + "/"])
        if rc != 0:
            self.module.fail_json(msg="seeding %s from %s: %s" % (dst, src, err.strip()))
        return self.note(dst, "seeded", out.strip() != "")


def component(files, bundle, private, name, c):
    user = c["user"]
    view = os.path.join(private, name)
    files.directory(view, user, user, 0o500)
    for f in c.get("files") or []:
        src = os.path.join(bundle, f)
        if not os.path.exists(src):
            continue
        dst = os.path.join(view, f)
        files.directory(os.path.dirname(dst), "root", "root", 0o755)
        if os.path.isdir(src):
            files.copy_tree(src, dst, user, user, 0o400, 0o500)
        else:
            files.copy(src, dst, user, user, 0o400)
    for s in c.get("state") or []:
        src = os.path.join(bundle, s)
        if not os.path.exists(src):
            # The unit mounts the state over it: the bundle needs the mount point.
            files.directory(src, "root", "root", 0o755)
        dst = os.path.join("/var/lib", c["state_name"], os.path.basename(s))
        files.directory(dst, user, user, 0o700)
        if s not in UNSEEDED:
            files.seed(src, dst)
            # cp gave dst the mode of src/.: back to its unit's StateDirectoryMode.
            os.chmod(dst, 0o700)
        files.chown_tree(dst, user, user)


def main():
    module = AnsibleModule(
        argument_spec=dict(
            bundle_dir=dict(type="path", required=True),
            private_dir=dict(type="path", required=True),
            components=dict(type="dict", default={}),
            units=dict(type="dict", default={}),
        ),
        supports_check_mode=False,
    )
    files = Files(module)
    for name, c in module.params["components"].items():
        for key in ("user", "state_name"):
            if not c.get(key):
                module.fail_json(msg="components.%s lacks %s" % (name, key))
        component(files, module.params["bundle_dir"], module.params["private_dir"], name, c)
    before = len(files.changes)
    for path in sorted(module.params["units"]):
        if not os.path.isdir(os.path.dirname(path)):
            files.directory(os.path.dirname(path), "root", "root", 0o755)
        files.write(path, module.params["units"][path].encode("utf-8"), "root", "root", 0o644)
    module.exit_json(changed=bool(files.changes), units_changed=len(files.changes) > before, changes=files.changes)


if __name__ == "__main__":
    main()
