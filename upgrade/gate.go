//go:build !cairn_nogate

package upgrade

// gateSkipped is true only in a build with the cairn_nogate tag, which
// exists to show that the bad-release drill fails without the gate.
const gateSkipped = false
