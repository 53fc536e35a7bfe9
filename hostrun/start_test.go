package hostrun

import "testing"

// A one-shot CRL run whose every failed shard was leased by the running
// daemon is no failure as a site starts; any other failure is.
func TestOnlyLeasedShards(t *testing.T) {
	leased := `2026-12-07T07:04:57Z vm unknown crl-updater[3171]: 3 crl-updater GZCWQw [AUDIT] Generating CRL failed JSON={"error":"leasing shard: rpc error: code = Unknown desc = leasing specific shard: shard 2 for issuer 70119532617093982 already leased"}
2026-12-07T07:04:58Z vm unknown crl-updater[3171]: 3 crl-updater EBt3Jw [AUDIT] one or more errors encountered, see logs JSON=null`
	upload := `2026-12-07T07:04:57Z vm unknown crl-updater[3171]: 3 crl-updater GZCWQw [AUDIT] Generating CRL failed JSON={"error":"uploading: connection refused"}`
	if !onlyLeased([]byte(leased)) {
		t.Error("leased shards only: not recognised")
	}
	if onlyLeased([]byte(leased+"\n"+upload)) || onlyLeased([]byte(upload)) || onlyLeased(nil) {
		t.Error("an upload failure taken for a leased shard")
	}
}
