//go:build ignore

// cairn-policycheck is built in Boulder's module with cairn's addition: it
// prints, one JSON line per argument, what Boulder's iana package says of
// a name (its ICANN suffix) or an address (reserved or not), so that cairn
// can check the addition works in each release it builds.
package main

import (
	"encoding/json"
	"net/netip"
	"os"

	"github.com/letsencrypt/boulder/iana"
)

func main() {
	enc := json.NewEncoder(os.Stdout)
	for _, arg := range os.Args[1:] {
		r := struct{ In, Suffix, Err string }{In: arg}
		var err error
		if ip, perr := netip.ParseAddr(arg); perr == nil {
			err = iana.IsReservedAddr(ip)
		} else {
			r.Suffix, err = iana.ExtractSuffix(arg)
		}
		if err != nil {
			r.Err = err.Error()
		}
		if enc.Encode(r) != nil {
			os.Exit(1)
		}
	}
}
