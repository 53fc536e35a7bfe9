// Package ansible holds cairn's playbook and roles; Files embeds them so
// `cairn provision` can write them out and run them.
package ansible

import "embed"

// Files: ansible.cfg, site.yml, destroy.yml, roles/ and connection_plugins/.
//
//go:embed ansible.cfg site.yml destroy.yml roles connection_plugins
var Files embed.FS
