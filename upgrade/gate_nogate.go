//go:build cairn_nogate

package upgrade

// gateSkipped: this build upgrades every site without gate, canary or
// rollback. Never ship it: it exists to show that the bad-release drill
// fails without the gate (docs/upgrades.md).
const gateSkipped = true
