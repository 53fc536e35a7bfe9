#!/usr/bin/python
# -*- coding: utf-8 -*-
# cairn: the components' users in one step (one round trip to the host
# instead of two per user).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cairn_accounts
short_description: The components' static system users, each with its own group
description:
  - For every name, a system group and a system user of that name in it,
    with the shell /usr/sbin/nologin and the home /nonexistent (not made),
    as ansible.builtin.group and ansible.builtin.user make them.
  - A user that exists with another group, shell or home is changed.
options:
  names:
    description: The users' (and their groups') names.
    type: list
    elements: str
    required: true
author: cairn
"""

RETURN = r"""
changes:
  description: What was created or changed.
  type: list
  elements: str
  returned: always
"""

import grp
import pwd

from ansible.module_utils.basic import AnsibleModule

SHELL = "/usr/sbin/nologin"
HOME = "/nonexistent"


def run(module, argv):
    rc, out, err = module.run_command(argv)
    if rc != 0:
        module.fail_json(msg="%s: %s" % (" ".join(argv), (err or out).strip()))


def main():
    module = AnsibleModule(argument_spec=dict(names=dict(type="list", elements="str", required=True)),
                           supports_check_mode=True)
    changes = []
    for name in module.params["names"]:
        try:
            gid = grp.getgrnam(name).gr_gid
        except KeyError:
            changes.append("group %s created" % name)
            gid = None
            if not module.check_mode:
                run(module, [module.get_bin_path("groupadd", True), "-r", name])
                gid = grp.getgrnam(name).gr_gid
        try:
            u = pwd.getpwnam(name)
        except KeyError:
            changes.append("user %s created" % name)
            if not module.check_mode:
                run(module, [module.get_bin_path("useradd", True), "-g", name, "-d", HOME, "-s", SHELL, "-M", "-r", name])
            continue
        if u.pw_gid != gid or u.pw_shell != SHELL or u.pw_dir != HOME:
            changes.append("user %s changed" % name)
            if not module.check_mode:
                run(module, [module.get_bin_path("usermod", True), "-g", name, "-d", HOME, "-s", SHELL, name])
    module.exit_json(changed=bool(changes), changes=changes)


if __name__ == "__main__":
    main()
