# -*- coding: utf-8 -*-
# cairn: cairn's binaries on the host. The copy module costs a round trip
# or two per file even when nothing changed (a stat with a checksum, then
# the file module); this asks the host once for every binary and sends
# only those whose content differs.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import hashlib
import os

from ansible.errors import AnsibleActionFail
from ansible.plugins.action import ActionBase


def sha1(path):
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class ActionModule(ActionBase):
    TRANSFERS_FILES = True

    def run(self, tmp=None, task_vars=None):
        result = super(ActionModule, self).run(tmp, task_vars)
        args = dict(self._task.args)
        src_dir = args.pop("src_dir", None)
        names = args.pop("names", None)
        if not src_dir or not names:
            raise AnsibleActionFail("cairn_binaries needs src_dir and names")
        local, sums = {}, {}
        for name in names:
            path = os.path.realpath(os.path.join(src_dir, name))
            if not os.path.isfile(path):
                raise AnsibleActionFail("%s: no such binary on the controller (src_dir %s)" % (name, src_dir))
            local[name], sums[name] = path, sha1(path)
        args["files"] = sums
        res = self._execute_module(module_name="cairn_binaries", module_args=args, task_vars=task_vars)
        need = res.get("need") or []
        if res.get("failed") or not need or self._play_context.check_mode:
            result.update(res)
            return result
        remote_tmp = self._make_tmp_path()
        try:
            staged = {}
            for name in need:
                staged[name] = self._connection._shell.join_path(remote_tmp, name)
                self._transfer_file(local[name], staged[name])
            args["staged"] = staged
            res2 = self._execute_module(module_name="cairn_binaries", module_args=args, task_vars=task_vars)
        finally:
            self._remove_tmp_path(remote_tmp, force=True)
        res2["changes"] = (res.get("changes") or []) + (res2.get("changes") or [])
        res2["changed"] = True
        result.update(res2)
        return result
