#!/bin/sh
# go test -exec (make test): each test binary in a session of its own
# (scripts/in-session.sh). Without it every test binary and what it runs
# in its session (Ansible, Terraform, certbot, lego, the drills' built-in
# clients) shared one session's part of the CPU against each of the labs'
# daemons (each in a session of its own), and the Ansible-bound
# end-to-end tests took three times their time alone.
# No session is favoured: with the two Ansible-bound packages at nice -5
# the labs' drills next to them lost real clients' renewals under load
# (one run in three).
exec "$(dirname "$0")/in-session.sh" 0 "$@"
