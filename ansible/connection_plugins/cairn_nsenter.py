# cairn: community.docker.nsenter with pipelining. Every command of a
# task is one nsenter; without pipelining a module costs four or five
# (a temporary directory, the module copied, a chmod, its run, the
# clean-up), with it one: the module goes on the Python's stdin.

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = """
name: cairn_nsenter
short_description: Run on a host (an nspawn machine or a namespace host) through nsenter, with pipelining
description:
  - community.docker.nsenter (which it extends), and pipelining (the
    module on the interpreter's stdin, no file on the host), which
    cairn's ansible.cfg turns on.
author: cairn
extends_documentation_fragment:
  - connection_pipelining
options:
  nsenter_pid:
    description: PID (as this machine sees it) whose namespaces to enter.
    type: int
    default: 1
    vars:
      - name: ansible_nsenter_pid
    env:
      - name: ANSIBLE_NSENTER_PID
    ini:
      - section: nsenter_connection
        key: nsenter_pid
"""

from ansible.errors import AnsibleError
from ansible.module_utils.common.text.converters import to_bytes, to_native
from ansible.plugins.connection import ConnectionBase
from ansible.utils.path import unfrackpath
from ansible_collections.community.docker.plugins.connection.nsenter import Connection as NsenterConnection


class Connection(NsenterConnection):
    """community.docker.nsenter; its exec_command hands in_data to the
    command's stdin, which is all pipelining needs."""

    transport = "cairn_nsenter"
    has_pipelining = True

    def put_file(self, in_path, out_path):
        """As community.docker.nsenter's, with cat rather than tee: tee
        also writes the file back on stdout (a binary of 80 MB twice
        through a pipe)."""
        ConnectionBase.put_file(self, in_path, out_path)
        in_path = unfrackpath(in_path, basedir=self.cwd)
        out_path = unfrackpath(out_path, basedir=self.cwd)
        try:
            with open(to_bytes(in_path, errors="surrogate_or_strict"), "rb") as f:
                data = f.read()
        except IOError as e:
            raise AnsibleError("failed to transfer file to {0}: {1}".format(out_path, to_native(e)))
        rc, out, err = self.exec_command(cmd=["/bin/sh", "-c", 'cat > "$1"', "sh", out_path], in_data=data)
        if rc != 0:
            raise AnsibleError("failed to transfer file to {0}: {1}".format(out_path, to_native(err)))
