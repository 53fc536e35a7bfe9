// Package hosttest holds the integration tests of the lab's client hosts
// (cairn lab exec --host) on a lab of their own (labtest.BlockHosts).
package hosttest
