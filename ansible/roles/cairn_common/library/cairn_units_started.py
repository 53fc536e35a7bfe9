#!/usr/bin/python
# -*- coding: utf-8 -*-
# cairn: start a bundle's units in one step (one round trip to the host
# instead of one per unit).

from __future__ import absolute_import, division, print_function

__metaclass__ = type

DOCUMENTATION = r"""
module: cairn_units_started
short_description: Enable and start a bundle's systemd units in order, each ready before the next
description:
  - Reloads systemd and enables every unit (cairn-<name>.service) that is
    not, as ansible.builtin.systemd with daemon_reload and enabled would.
  - Enables and starts (when not active) the sockets, before the
    processes.
  - Then in the bundle's order restarts the processes in restart and
    starts every other one whose unit is not active or activating; after
    each start it waits until the process is ready (its bundle.json
    ready, tcp:ADDR or unix:PATH, accepts a connection), as cairn's
    supervisor does. A unit starts as soon as its process runs, not when
    it serves, so without the wait a later one (the CRL updater's first
    run) can find the ones it needs not listening yet.
options:
  processes:
    description: The bundle's processes in order (name, ready; other keys are ignored).
    type: list
    elements: dict
    required: true
  sockets:
    description: Socket units (their full names) to enable and start along with the processes.
    type: list
    elements: str
    default: []
  restart:
    description: Names of the processes to restart.
    type: list
    elements: str
    default: []
  bundle_dir:
    description: >-
      The host's bundle directory: a unix:PATH under one of a process's
      state directories is looked for where that directory is on the host.
    type: path
    required: true
  state:
    description: Each process's state directories by its name (state, relative to bundle_dir, and state_name), as the units mount them.
    type: dict
    default: {}
  ready_timeout:
    description: Seconds a started process has to become ready.
    type: int
    default: 120
author: cairn
"""

RETURN = r"""
enabled:
  description: The units enabled.
  type: list
  elements: str
  returned: always
started:
  description: The units started or restarted.
  type: list
  elements: str
  returned: always
"""

import os
import socket
import time

from ansible.module_utils.basic import AnsibleModule

# systemctl is-enabled states that need no `systemctl enable`.
ENABLED = ("enabled", "enabled-runtime", "static", "generated", "linked", "linked-runtime", "transient")


def host_path(path, bundle_dir, access):
    """Where path (in the unit's view) is on the host: a state directory
    is mounted over the bundle's directory for its unit alone."""
    for s in access.get("state") or []:
        inner = os.path.join(bundle_dir, s)
        if path == inner or path.startswith(inner + "/"):
            return os.path.join("/var/lib", access["state_name"], os.path.basename(s)) + path[len(inner):]
    return path


def accepts(ready):
    if ready.startswith("unix:"):
        family, addr = socket.AF_UNIX, ready[len("unix:"):]
    else:
        host, _, port = ready[len("tcp:"):].rpartition(":")
        family, addr = (socket.AF_INET6 if ":" in host else socket.AF_INET), (host.strip("[]"), int(port))
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(0.5)
    try:
        s.connect(addr)
        return True
    except (OSError, ValueError):
        return False
    finally:
        s.close()


def main():
    module = AnsibleModule(
        argument_spec=dict(
            processes=dict(type="list", elements="dict", required=True),
            sockets=dict(type="list", elements="str", default=[]),
            restart=dict(type="list", elements="str", default=[]),
            bundle_dir=dict(type="path", required=True),
            state=dict(type="dict", default={}),
            ready_timeout=dict(type="int", default=120),
        ),
        supports_check_mode=True,
    )
    p = module.params
    systemctl = module.get_bin_path("systemctl", True)

    def run(*args):
        rc, out, err = module.run_command([systemctl] + list(args))
        if rc != 0:
            module.fail_json(msg="systemctl %s: %s" % (" ".join(args), (err or out).strip()), rc=rc)
        return out

    def query(*args):
        return module.run_command([systemctl] + list(args))[1].strip()

    def status(unit):
        return module.run_command([systemctl, "status", "--no-pager", "--lines=8", unit])[1].strip()

    def wait_ready(unit, ready):
        deadline = time.time() + p["ready_timeout"]
        while not accepts(ready):
            active = query("show", "--property=ActiveState", "--value", unit)
            if active in ("failed", "inactive"):
                module.fail_json(msg="%s is %s before it is ready (%s):\n%s" % (unit, active, ready, status(unit)))
            if time.time() > deadline:
                module.fail_json(msg="%s is not ready (%s) after %ds:\n%s" % (unit, ready, p["ready_timeout"], status(unit)))
            time.sleep(0.1)

    units = [(proc["name"], "cairn-%s.service" % proc["name"], proc.get("ready") or "") for proc in p["processes"]]
    if not module.check_mode:
        run("daemon-reload")
    enable = [u for u in [u for _, u, _ in units] + p["sockets"] if query("is-enabled", u) not in ENABLED]
    if enable and not module.check_mode:
        run("enable", *enable)
    started = [u for u in p["sockets"] if query("is-active", u) != "active"]
    if started and not module.check_mode:
        run("start", *started)
    for name, unit, ready in units:
        if name in p["restart"]:
            verb = "restart"
        elif query("is-active", unit) in ("active", "activating"):
            continue
        else:
            verb = "start"
        started.append(unit)
        if module.check_mode:
            continue
        run(verb, unit)
        if ready:
            wait_ready(unit, ready if not ready.startswith("unix:") else
                       "unix:" + host_path(ready[len("unix:"):], p["bundle_dir"], p["state"].get(name) or {}))
    module.exit_json(changed=bool(enable or started), enabled=enable, started=started)


if __name__ == "__main__":
    main()
