//go:build ignore

// This file is added to Boulder's iana package when cairn builds Boulder
// (with shared.go next to it); it is never part of cairn's own build. It
// names unexported parts of package iana (reservedPrefixes and its
// addressBlock field): a release that renames them fails to build, and
// cairn then refuses that release (docs/policy.md).

package iana

import (
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/weppos/publicsuffix-go/publicsuffix"
)

// Runs after ip.go's init (files initialise in name order; this one is
// zz_cairn_glue.go), which fills reservedPrefixes.
func init() {
	if err := cairnApply(os.Getenv(cairnEnvSuffixes), os.Getenv(cairnEnvNetworks)); err != nil {
		panic("cairn's policy addition to Boulder: " + err.Error())
	}
}

// cairnApply adds the private suffixes to the public suffix list and takes
// the allowed networks out of the reserved blocks; empty values change
// nothing.
func cairnApply(suffixes, networks string) error {
	if suffixes != "" {
		list, err := cairnParseSuffixes(suffixes)
		if err == nil {
			err = cairnAddSuffixes(publicsuffix.DefaultList, list)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", cairnEnvSuffixes, err)
		}
	}
	if networks == "" {
		return nil
	}
	allowed, err := cairnParseNetworks(networks)
	if err != nil {
		return fmt.Errorf("%s: %w", cairnEnvNetworks, err)
	}
	if len(reservedPrefixes) == 0 {
		return errors.New("the reserved address blocks are not loaded before the addition runs (iana's init order changed)")
	}
	var kept []reservedPrefix
	for _, r := range reservedPrefixes {
		for _, p := range cairnSubtract(r.addressBlock, allowed) {
			part := r
			part.addressBlock = p
			kept = append(kept, part)
		}
	}
	// Most specific first, as Boulder sorts them.
	slices.SortStableFunc(kept, func(a, b reservedPrefix) int { return b.addressBlock.Bits() - a.addressBlock.Bits() })
	reservedPrefixes = kept
	return nil
}
