#!/bin/sh
# go test -exec (make test): each test binary in a session of its own
# (scripts/in-session.sh). Without it every test binary and what it runs
# in its session (Ansible, Terraform, certbot, lego, the drills' built-in
# clients) shared one session's part of the CPU against each of the labs'
# daemons (each in a session of its own), and the Ansible-bound
# end-to-end tests took three times their time alone.
# The two Ansible-bound end-to-end packages, the longest
# (internal/nspawntest, provision), get a larger part (nice -5), so that
# they do not end alone on CPUs the others have left idle.
case "$1" in
*/nspawntest.test | */provision.test) nice=-5 ;;
*) nice=0 ;;
esac
exec "$(dirname "$0")/in-session.sh" "$nice" "$@"
