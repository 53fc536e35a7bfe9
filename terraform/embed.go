// Package terraform holds cairn's Terraform modules (see README.md in each
// directory); Files embeds them so `cairn provision` can write them out.
package terraform

import "embed"

// Files: local/, nspawn/ and aws/ (modules and examples).
//
//go:embed local/*.tf nspawn/*.tf aws/modules/*/*.tf aws/examples/*/*.tf
var Files embed.FS
